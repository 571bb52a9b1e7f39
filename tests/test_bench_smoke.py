"""The benchmark harness on its tiny smoke budget, so that it cannot rot (the full suite is not a test)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

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
    # every contender trained and was scored on the (subset) test images
    assert res["pytorch_example"]["epochs"] and 0 <= res["pytorch_example"]["final_test_accuracy"] <= 1
    assert res["sklearn"]["fit_seconds"] > 0 and 0 <= res["sklearn"]["test_accuracy"] <= 1
    for name in ("cnn", "mlp"):
        r = res[name]
        assert len(r["runs"]) == 1 and r["train_seconds_median"] > 0
        assert 0.1 < r["test_accuracy_mean"] <= 1  # a few steps already beat chance (0.1)
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
    assert all(r["train_seconds"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in cnn["runs"])
    assert cnn["config"]["amp"] is False and cnn["config"]["batch_size"] == 128
    assert "time-to-99 %: median" in done.stdout
    single = cnn["inference"]["single_image"]
    assert cnn["inference"]["batch_images_per_second"] > 0 and 0 < single["p50_ms"] <= single["p99_ms"]
