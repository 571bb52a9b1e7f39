"""`mnistlab report` on a real (tiny) run, and the --seeds aggregation."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from mnistlab.api import train
from mnistlab.cli.app import main
from mnistlab.lab.repeat import aggregate, summarise_runs


def test_report_of_a_tiny_run(tiny_config, tmp_path):
    run = train(tiny_config)
    with pytest.raises(SystemExit) as exit_info:  # through the CLI: `mnistlab report RUN --out DIR`
        main(["report", str(run.path), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 0
    html = tmp_path / "report" / "report.html"
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    cm = numbers["confusion_matrix"]
    assert sum(map(sum, cm)) == numbers["images"] == 10_000
    # the report's accuracy is the confusion matrix's diagonal, and equals the run's own (single) test score
    assert math.isclose(sum(cm[i][i] for i in range(10)) / 10_000, numbers["test_accuracy"])
    assert math.isclose(numbers["test_accuracy"], run.summary["test_accuracy"], abs_tol=1e-4)
    for name in (
        "learning_curves.png",
        "confusion_matrix.png",
        "mistakes.png",
        "unsure_correct.png",
        "per_class.csv",
    ):
        assert (tmp_path / "report" / name).is_file(), name
    # mistakes gallery: wrong answers, most confident first
    mistakes = numbers["mistakes"]
    assert mistakes and all(m["true"] != m["predicted"] for m in mistakes)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes), reverse=True)
    assert all(u["true"] == u["predicted"] for u in numbers["unsure_correct"])
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 4 and "src='http" not in text


def test_aggregate_mean_and_sample_std():
    stats = aggregate([0.97, 0.98, 0.99])
    assert math.isclose(stats["mean"], 0.98)
    assert math.isclose(stats["std"], 0.01)  # sqrt(((0.01)^2 * 2) / (3 - 1))
    assert aggregate([0.5])["std"] == 0.0
    with pytest.raises(ValueError):
        aggregate([])


def test_summarise_runs(tiny_config):
    runs = [
        {"seed": 3, "test_accuracy": 0.9, "train_seconds": 10.0, "epochs_run": 2, "best_epoch": 2},
        {"seed": 4, "test_accuracy": 0.8, "train_seconds": 14.0, "epochs_run": 2, "best_epoch": 1},
    ]
    summary = summarise_runs(runs, tiny_config)
    assert summary["seeds"] == [3, 4]
    assert math.isclose(summary["test_accuracy"]["mean"], 0.85)
    assert math.isclose(summary["test_accuracy"]["std"], statistics.stdev([0.9, 0.8]))
    assert math.isclose(summary["seconds_per_epoch"]["mean"], 6.0)


def test_train_seeds_writes_one_folder_per_seed(tmp_path, capsys):
    args = [
        "--model",
        "mlp",
        "--hidden",
        "64",
        "--train-subset",
        "500",
        "--val-size",
        "1000",
        "--epochs",
        "1",
    ]
    with pytest.raises(SystemExit) as exit_info:  # `mnistlab train --seeds 2 --seed 5`
        main(["train", *args, "--seed", "5", "--seeds", "2", "--out", str(tmp_path / "seeds"), "-q"])
    assert exit_info.value.code == 0
    summary = json.loads((tmp_path / "seeds" / "summary.json").read_text())
    assert summary["seeds"] == [5, 6]
    per_seed = [json.loads((tmp_path / "seeds" / f"seed-{k}" / "summary.json").read_text()) for k in (5, 6)]
    assert [s["seed"] for s in per_seed] == [5, 6]
    assert math.isclose(
        summary["test_accuracy"]["mean"], statistics.fmean(s["test_accuracy"] for s in per_seed)
    )
    assert (tmp_path / "seeds" / "summary.md").is_file()
    assert "2 seeds: test accuracy" in capsys.readouterr().out


def test_train_with_report_and_tensorboard_uses_one_default_folder(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)  # the default folder is runs/<timestamp>-mlp under the working directory
    args = ["train", "--model", "mlp", "--hidden", "32", "--train-subset", "500", "--val-size", "500"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--epochs", "1", "--report", "--tensorboard", "-q"])
    assert exit_info.value.code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-mlp")
    assert (folder / "summary.json").is_file() and (folder / "report" / "report.html").is_file()
    assert any((folder / "tensorboard").iterdir())
    assert json.loads((folder / "config.json").read_text())["out"] == str(Path("runs") / folder.name)


def test_step_positions_place_each_step_at_its_fraction_of_an_epoch():
    from mnistlab.evaluation.plots import step_positions

    # epoch 1: 4 steps; epoch 2 (say, resumed with another batch size): 2 steps
    x, y = step_positions([{"epoch": 1, "loss": [2.0, 1.0, 0.5, 0.4]}, {"epoch": 2, "loss": [0.3, 0.2]}])
    assert x == [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    assert y == [2.0, 1.0, 0.5, 0.4, 0.3, 0.2]


def test_moving_average_is_a_trailing_mean():
    from mnistlab.evaluation.plots import moving_average

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_a_one_epoch_run_has_a_learning_curve_from_its_steps():
    """One epoch gave one point per series and x ticks 0.96...1.04; now every step is on the curve."""
    from mnistlab.evaluation.plots import learning_curves

    history = [{"epoch": 1, "train_loss": 0.3, "train_accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.97}]
    steps = [{"epoch": 1, "loss": [2.3 * 0.97**k for k in range(430)]}]
    fig = learning_curves(history, steps)
    loss_axes = fig.axes[0]
    each_step = loss_axes.lines[0]
    assert len(each_step.get_xdata()) == 430 and each_step.get_xdata()[-1] == 1.0
    assert loss_axes.get_xlim()[0] == 0 and 1.0 <= loss_axes.get_xlim()[1] < 1.1
    ticks = [t for t in loss_axes.get_xticks() if 0 <= t <= 1.02]
    assert len(ticks) >= 3  # e.g. 0, 0.2, ..., 1.0: not 0.96 ... 1.04


def test_report_draws_the_steps_of_the_run(tiny_config, tmp_path, monkeypatch):
    from mnistlab.evaluation import plots, report

    seen = {}
    real = plots.learning_curves
    monkeypatch.setattr(plots, "learning_curves", lambda h, s=(): seen.setdefault("steps", s) and real(h, s))
    run = train(tiny_config)
    report.run_report(run.path, out=tmp_path / "report")
    assert [len(s["loss"]) for s in seen["steps"]] == [8]  # 2,000 images in batches of 256
