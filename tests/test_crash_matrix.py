"""The crash matrix: SIGKILL a training process at each of the places a crash can leave a run folder, then
resume; every case must end in the weights of an uninterrupted run, bit for bit, with clean metrics and no
temporary or lock files.

The kill is placed by the test-only hook ``MNISTLAB_TEST_KILL_AT`` (:mod:`mnistlab.testhooks`). The synthetic
runs have 5 steps per epoch and 3 epochs. The training processes are forked from a multiprocessing
forkserver that has imported mnistlab (and torch) once, so each costs its training, not another import;
each killed run is then resumed in this process and compared with a reference trained here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

import mnistlab
from conftest import write_synthetic_dataset
from mnistlab.config import with_values
from mnistlab.fileio import is_temp_file
from mnistlab.testhooks import ENV
from run_folders import SYNTHETIC_TEST, SYNTHETIC_TRAIN, synthetic_config


@dataclass(frozen=True)
class Crash:
    point: str  # the MNISTLAB_TEST_KILL_AT value
    what: str  # what the folder holds when the process dies
    left_behind: tuple[str, ...]  # files that must be there after the kill (proof that the kill hit there)
    early_stop: bool = False  # a run that stops early, at epoch 2 of 3


CRASHES = [
    Crash("run-folder-ready", "config.json and no checkpoint yet", ("config.json", ".lock")),
    Crash("step@7", "epoch 1's checkpoint, in the middle of epoch 2", ("last.safetensors",)),
    Crash("checkpoint-saved@2", "epoch 2's checkpoint, not its metrics line", ("last.safetensors",)),
    Crash(
        "replace:last.safetensors@2", "epoch 2's checkpoint, written but not renamed", ("last.safetensors",)
    ),
    Crash("replace:model.safetensors", "every epoch, the model file half-way", ("last.safetensors",)),
    Crash(
        "replace:summary.json", "the model file, the summary written but not renamed", ("model.safetensors",)
    ),
    Crash("replace:summary.json", "an early-stopped run, during its summary", ("model.safetensors",), True),
]


def train_until_killed(config: str, point: str, cache: str) -> None:
    """The training process: one run, killed by its own crash point."""
    os.environ.update({ENV: point, "MNISTLAB_CACHE": cache})
    mnistlab.train(mnistlab.TrainConfig.from_dict(json.loads(config)))


def config_for(out: Path, data: Path, early_stop: bool) -> mnistlab.TrainConfig:
    # on these random labels validation accuracy falls after epoch 1: patience 1 stops after epoch 2
    return with_values(synthetic_config(out, data), {"patience": 1} if early_stop else {})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Start every killed run at once; return (data, {case index: (folder, exit code)})."""
    root = tmp_path_factory.mktemp("crash")
    data = root / "data"
    write_synthetic_dataset(data, SYNTHETIC_TRAIN, SYNTHETIC_TEST)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["mnistlab.api"]
    )  # torch imported once; no torch thread runs before a fork
    started = {}
    for index, crash in enumerate(CRASHES):
        folder = root / f"run-{index}"
        config = json.dumps(asdict(config_for(folder, data, crash.early_stop)))
        process = context.Process(target=train_until_killed, args=(config, crash.point, str(root / "cache")))
        process.start()
        started[index] = folder, process
    for _, process in started.values():
        process.join(timeout=300)
    return data, {index: (folder, process.exitcode) for index, (folder, process) in started.items()}


@pytest.fixture(scope="module")
def references(matrix, tmp_path_factory):
    """The uninterrupted runs (normal and early-stopping), trained in this process."""
    data, _ = matrix
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_CACHE", str(root / "cache"))
        return {
            early: mnistlab.train(config_for(root / f"ref-{early}", data, early)) for early in (False, True)
        }


def strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.mark.parametrize("index", range(len(CRASHES)), ids=[f"{c.point}:{c.what}" for c in CRASHES])
def test_a_killed_run_resumes_to_the_uninterrupted_one(matrix, references, index, monkeypatch):
    crash = CRASHES[index]
    folder, exitcode = matrix[1][index]
    monkeypatch.setenv("MNISTLAB_CACHE", str(folder.parent / "cache"))
    assert exitcode == -signal.SIGKILL, f"the process was not killed at {crash.point} (exit code {exitcode})"
    names = {p.name for p in folder.iterdir()}
    assert set(crash.left_behind) <= names and "summary.json" not in names, names
    if crash.point.startswith("replace:"):  # the write was cut off: its temporary file is still there
        assert any(is_temp_file(n) for n in names), names

    resumed = mnistlab.train(resume=folder)

    reference = references[crash.early_stop]
    assert resumed.summary["epochs_run"] == reference.summary["epochs_run"]
    assert crash.early_stop == (reference.summary["epochs_run"] < reference.config.epochs)
    loaded = mnistlab.load_run(folder)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name  # bit for bit
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert strip(lines) == strip(reference.history)  # one line per epoch, no repeat, no torn line
    assert loaded.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in reference.path.iterdir())
