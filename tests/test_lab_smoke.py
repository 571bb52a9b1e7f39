"""Each training experiment end to end on a tiny setting: it trains, and writes figures, report and numbers.

The tiny settings replace each experiment's ``settings()`` (quick mode takes about a minute per experiment on
2 cores, too long for the suite); everything else is the real code path on real MNIST slices.
"""

from __future__ import annotations

import json

import pytest

from mnistlab.lab import LabOptions, batch_size, models, overfitting, preprocessing, run_experiment

# the real settings, captured before the tests replace them
REAL = {
    "preprocessing": preprocessing.settings,
    "batch-size": batch_size.settings,
    "overfitting": overfitting.settings,
    "models": models.settings,
}


def _tiny_preprocessing(quick):
    return REAL["preprocessing"](quick) | {"hidden": [16], "epochs": 1, "train_subset": 300, "val_size": 200}


def _tiny_batch_size(quick, lr_scaling):
    return REAL["batch-size"](quick, lr_scaling) | {
        "hidden": [16],
        "epochs": 2,
        "train_subset": 300,
        "batch1_subset": 20,
        "batch_sizes": [1, 32, batch_size.FULL],
        "target_val_accuracy": 0.2,
    }


def _tiny_overfitting(quick):
    return REAL["overfitting"](quick) | {
        "hidden": [32],
        "train_subset": 100,
        "val_size": 200,
        "epochs": 4,
        "patience": 1,
    }


def _tiny_models(quick):
    return REAL["models"](quick) | {"seeds": 2, "train_subset": 200, "max_epochs": 1}


EXPECTED = {
    "preprocessing": ("preprocessing.png", "data_cloud.png", "results.csv", "curves.json"),
    "batch-size": ("batch_size.png", "convergence.png", "results.csv", "curves.json"),
    "overfitting": ("overfitting.png", "history.csv", "summary.json"),
    "models": ("models.png", "results.csv", "results.json"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_experiment_writes_its_files(name, tmp_path, monkeypatch):
    monkeypatch.setattr(preprocessing, "settings", _tiny_preprocessing)
    monkeypatch.setattr(batch_size, "settings", _tiny_batch_size)
    monkeypatch.setattr(overfitting, "settings", _tiny_overfitting)
    monkeypatch.setattr(models, "settings", _tiny_models)
    monkeypatch.setattr(models, "MODELS", [("mlp", "MLP")])
    monkeypatch.setattr(preprocessing, "MODES", [("raw", "raw"), ("standardize", "standardised")])
    out = tmp_path / name
    run_experiment(name, LabOptions(quick=True, out=out, lr_scaling="linear"))
    for file in (*EXPECTED[name], "report.html", "report.md", "config.json"):
        assert (out / file).is_file(), file
    assert json.loads((out / "config.json").read_text())["experiment"] == name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 1 and html.index("<img") < html.index("<table")
    if name == "batch-size":
        _check_batch_size_rows(out)
    if name == "overfitting":
        _check_overfitting_summary(out)


def _check_batch_size_rows(out):
    lines = (out / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert [int(r["batch_size"]) for r in rows] == [1, 32, 300]  # FULL = the whole 300-image subset
    assert [int(r["updates_per_epoch"]) for r in rows] == [20, 10, 1]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.05 * b / 128 for b in (1, 32, 300)])
    assert rows[0]["seconds_extrapolated"] == "True" and rows[1]["seconds_extrapolated"] == "False"


def _check_overfitting_summary(out):
    summary = json.loads((out / "summary.json").read_text())
    history = (out / "history.csv").read_text().splitlines()[1:]
    assert summary["epochs_run"] == len(history) == 4  # trains to the end to show both curves
    assert 1 <= summary["best_epoch"] <= 4
    assert summary["stop_epoch"] is None or summary["best_epoch"] < summary["stop_epoch"]
    assert set(summary["criteria"]) == {"val_accuracy", "val_loss"}
    assert summary["criteria"]["val_accuracy"]["best_epoch"] == summary["best_epoch"]


def test_unknown_experiment_is_a_config_error():
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        run_experiment("nope", LabOptions())
