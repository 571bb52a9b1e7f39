"""The benchmark harness on its tiny smoke budget, so that it cannot rot (the full suite is not a test)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run bench/SCRIPT as a user would (a script, mnistlab from src/); fail with its stderr if it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_smoke_suite_runs_and_reports_every_section(tmp_path):
    out = tmp_path / "smoke.json"
    done = run_bench("run.py", "--suite", "smoke", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["suite"] == "smoke"
    assert res["machine"]["peak_fp32_gflops"] > 0 and res["machine"]["torch_threads"] >= 1
    # every contender trained and was scored on the smoke suite's 1,000 test images (mnistlab: all 10,000):
    # an accuracy is a count of right answers over that many images, and one epoch beats chance (10 %)
    for accuracy, images in (
        (res["pytorch_example"]["final_test_accuracy"], 1000),
        (res["sklearn"]["test_accuracy"], 1000),
        (res["cnn"]["test_accuracy_mean"], 10_000),  # one seed: the mean is that run's score
        (res["mlp"]["test_accuracy_mean"], 10_000),
    ):
        assert accuracy * images == pytest.approx(round(accuracy * images), abs=1e-6)
        assert 0.15 < accuracy <= 1
    assert res["pytorch_example"]["epochs"] and res["sklearn"]["fit_seconds"] > 0
    for name in ("cnn", "mlp"):
        r = res[name]
        assert len(r["runs"]) == 1 and r["train_seconds_median"] > 0
        assert r["flops_per_train_image"] > 0 and math.isfinite(r["percent_of_peak"])
    for model in ("mnistlab cnn", "mnistlab mlp", "pytorch example", "sklearn MLP"):
        inf = res["inference"][model]
        assert inf["batch_images_per_second"] > 0
        assert 0 < inf["single_image"]["p50_ms"] <= inf["single_image"]["p99_ms"]
    assert res["data_loading"]["cold_s"] > 0 and res["data_loading"]["warm_s"] > 0
    numpy = res["numpy_engine"]  # the NumPy engine against scikit-learn with the same hidden sizes
    assert (
        len(numpy["runs"]) == 1
        and numpy["train_seconds_median"] > 0
        and 0.1 < numpy["test_accuracy_mean"] <= 1
    )
    assert numpy["sklearn_same_hidden"]["hidden"] == numpy["hidden"]
    assert len(res["targets"]) == 9 and all(isinstance(t["met"], bool) for t in res["targets"])
    # the Markdown report is printed, with the side-by-side table and the targets
    assert "| pytorch/examples mnist" in done.stdout and "| target |" in done.stdout
    assert "NumPy engine against scikit-learn MLPClassifier" in done.stdout


def test_gpu_bench_script_runs_on_the_cpu_smoke_budget(tmp_path):
    """bench/gpu.py is only timed on a GPU; here it runs 3 steps on the CPU so that the script cannot rot."""
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--max-steps", "3", "--seeds", "2", "--no-example", "--out", str(out)]
    done = run_bench("gpu.py", *args)
    res = json.loads(out.read_text())
    cnn = res["mnistlab_cnn"]
    assert [r["seed"] for r in cnn["runs"]] == [0, 1]
    for r in cnn["runs"]:  # 3 steps already beat chance; each score counts right answers of 10,000 images
        assert r["train_seconds"] > 0 and 0.15 < r["test_accuracy"] <= 1
        assert r["test_accuracy"] * 10_000 == pytest.approx(round(r["test_accuracy"] * 10_000), abs=1e-6)
    assert cnn["runs"][0]["test_accuracy"] != cnn["runs"][1]["test_accuracy"]  # two seeds, two runs
    assert cnn["config"]["amp"] is False and cnn["config"]["batch_size"] == 128
    assert "time-to-99 %: median" in done.stdout
    single = cnn["inference"]["single_image"]
    assert cnn["inference"]["batch_images_per_second"] > 0 and 0 < single["p50_ms"] <= single["p99_ms"]


def test_serve_load_bench_runs_on_a_tiny_budget(app_run, tmp_path):
    """bench/serve_load.py end to end: two short load levels and a 20-client stalled-upload attack."""
    out = tmp_path / "serve.json"
    args = ["--run", str(app_run.path), "--levels", "1,4", "--seconds", "1", "--request-timeout", "1"]
    done = run_bench(
        "serve_load.py", *args, "--attack-clients", "20", "--attack-seconds", "20", "--out", str(out)
    )
    res = json.loads(out.read_text())
    assert [lv["connections"] for lv in res["levels"]] == [1, 4]
    for lv in res["levels"]:
        assert lv["requests"] > 0 and lv["errors"] == 0 and 0 < lv["p50_ms"] <= lv["p99_ms"]
        assert lv["server_cpu_ms_per_request"] > 0
    attack = res["attack"]
    assert attack["outcomes"] == {"HTTP 408": 20} and attack["serves_after"] is True
    assert attack["recovered_within_50mb_s_after_stall"] is not None
    assert "| connections | requests | req/s |" in done.stdout


def test_committee_speed_bench_runs_on_a_tiny_budget(tmp_path):
    """bench/committee_speed.py (grouped vs one-after-another steps) on two tiny rounds of two members."""
    out = tmp_path / "speed.json"
    args = ["--model", "cnn", "--members", "2", "--steps", "2", "--rounds", "2", "--threads", "1"]
    done = run_bench("committee_speed.py", *args, "--augment", "both", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["members"] == 2 and res["augment"] == "both" and res["rounds"] == 2
    assert res["ms_per_member_step_one_after_another"] > 0 and res["ms_per_member_step_at_once"] > 0
    assert res["speedup_at_once"] == pytest.approx(
        res["ms_per_member_step_one_after_another"] / res["ms_per_member_step_at_once"]
    )
    assert "per member-step one after another" in done.stdout
