"""--tensorboard: event files from the epoch callback, and a one-line install hint when it is missing."""

from __future__ import annotations

import importlib.util

import pytest

from mnistlab.errors import ConfigError
from mnistlab.lab import tensorboard


def test_missing_tensorboard_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'mnistlab\[tensorboard\]'"):
        tensorboard.TensorBoardLogger("unused")


def test_logger_writes_one_scalar_per_metric_and_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tensorboard.TensorBoardLogger(tmp_path / "tb") as log:
        for epoch in (1, 2):
            log({"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10, "lr": 0.1})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "accuracy/val", "other/lr"} <= tags
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2]
    assert [round(e.value, 6) for e in events.Scalars("loss/train")] == [1.0, 0.5]


def test_cli_flag_without_tensorboard_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    from mnistlab.cli.app import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "mlp", "--tensorboard", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mnistlab[tensorboard]'" in err[0]
    assert not (tmp_path / "run").exists()  # failed before training started
