"""No stuck run folders: a run stopped before its first checkpoint resumes from epoch 1 or is replaced with
--overwrite; a folder is trained in by one process at a time (its lock); leftovers of a crash are cleaned."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

import mnistlab
from conftest import write_synthetic_dataset
from mnistlab.cli.app import main
from mnistlab.errors import ConfigError, RunError
from run_folders import SYNTHETIC_TEST, SYNTHETIC_TRAIN, synthetic_config


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))
    write_synthetic_dataset(tmp_path / "data", SYNTHETIC_TRAIN, SYNTHETIC_TEST)
    return tmp_path / "data"


def stopped_before_first_checkpoint(config, interrupted_in_epoch):
    with interrupted_in_epoch(1):  # Ctrl-C in epoch 1: config.json and an empty metrics.jsonl, nothing else
        mnistlab.train(config)
    return config.out


def same_weights(a, b) -> bool:
    return all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_epoch_1(data, tmp_path, interrupted_in_epoch):
    reference = mnistlab.train(synthetic_config(tmp_path / "reference", data))
    folder = stopped_before_first_checkpoint(synthetic_config(tmp_path / "run", data), interrupted_in_epoch)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "steps.jsonl",
    ]
    resumed = mnistlab.train(resume=folder)
    assert same_weights(resumed, reference) and len(resumed.history) == 3
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]


def test_a_stuck_folder_is_refused_with_the_ways_out_then_replaced_with_overwrite(
    data, tmp_path, interrupted_in_epoch, capsys
):
    config = synthetic_config(tmp_path / "run", data)
    folder = tmp_path / "run"
    stopped_before_first_checkpoint(config, interrupted_in_epoch)
    with pytest.raises(
        ConfigError, match=rf"not empty; .* --resume {folder}, or replace it with --overwrite"
    ):
        mnistlab.train(config)
    config.seed = 1  # a different run, in the same folder
    run = mnistlab.train(config, overwrite=True)
    assert run.config.seed == 1 and (folder / "summary.json").is_file()
    args = [
        "train",
        "--model",
        "mlp",
        "--hidden",
        "8",
        "--data-dir",
        str(data),
        "--no-download",
        "--val-size",
    ]
    with pytest.raises(SystemExit) as exit_:  # a completed run can be replaced too, through the CLI
        main([*args, "50", "--epochs", "1", "--threads", "1", "-q", "--out", str(folder), "--overwrite"])
    assert exit_.value.code == 0, capsys.readouterr().err
    assert mnistlab.load_run(folder).config.model.hidden == (8,)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "steps.jsonl",
        "summary.json",
    ]


def test_overwrite_replaces_only_a_run_folder(data, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="--overwrite replaces only a run folder"):
        mnistlab.train(synthetic_config(precious, data), overwrite=True)
    (precious / "config.json").write_text('{"not": "a run"}')
    with pytest.raises(RunError, match="not a readable mnistlab config"):
        mnistlab.train(synthetic_config(precious, data), overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"
    with pytest.raises(ConfigError, match="choose one"):
        mnistlab.train(synthetic_config(tmp_path / "x", data), resume=precious, overwrite=True)


HOLD = """
import sys, mnistlab.runs
from pathlib import Path
with mnistlab.runs.hold_run_folder(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def held_by_another_process():
    """``with held_by_another_process(folder) as pid:`` another process holds the folder (trains in it)."""
    import contextlib

    @contextlib.contextmanager
    def hold(folder):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            yield holder.pid
        finally:
            holder.communicate("", timeout=60)

    return hold


def test_a_second_trainer_or_resumer_fails_at_once(
    data, tmp_path, interrupted_in_epoch, held_by_another_process
):
    """The issue's two --resume runs 1 s apart both trained and appended (7 rows for 4 epochs)."""
    config = synthetic_config(tmp_path / "run", data)
    folder = tmp_path / "run"
    stopped_before_first_checkpoint(config, interrupted_in_epoch)
    with held_by_another_process(folder) as pid:
        started = time.perf_counter()
        with pytest.raises(
            RunError, match=rf"{folder}: this run folder is in use by another mnistlab process \(pid {pid}\)"
        ):
            mnistlab.train(resume=folder)
        assert time.perf_counter() - started < 2.0  # at once: before the data is even read
        with pytest.raises(RunError, match="in use by another mnistlab process"):
            mnistlab.train(config, overwrite=True)
        assert (folder / "config.json").is_file() and not (folder / "error.txt").exists()
    run = mnistlab.train(resume=folder)  # the holder has finished: the folder is free again
    assert len(run.history) == 3 and not (folder / ".lock").exists()
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3


def test_leftovers_of_a_killed_run_do_not_make_a_folder_non_empty(data, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("12345\n")  # a killed trainer's lock (nobody holds it)
    (folder / ".config.json.0123abcd.tmp").write_text("{")  # and a write it never finished
    run = mnistlab.train(synthetic_config(folder, data, epochs=1))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "metrics.jsonl", "model.safetensors", "steps.jsonl", "summary.json"]
    )
    assert run.summary["epochs_run"] == 1
