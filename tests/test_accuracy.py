"""Real-MNIST accuracy floors with a bounded budget (each well under a minute on 2 cores).

These use the models' own recipes (the cnn's default is already one epoch; the mlp gets fewer epochs), so
they guard against regressions in the data path, preprocessing, models and optimisation without the cost of
full runs (see BENCHMARKS.md).
"""

from __future__ import annotations

import mnistlab


def test_default_cnn_reaches_98_5_percent(tmp_path):
    cfg = mnistlab.recipe("cnn")
    cfg.epochs = 1
    cfg.quiet = True
    cfg.out = str(tmp_path / "cnn")
    run = mnistlab.train(cfg)
    assert run.summary["test_accuracy"] >= 0.985, run.summary


def test_mlp_reaches_97_percent(tmp_path):
    cfg = mnistlab.recipe("mlp")
    cfg.epochs = 2
    cfg.quiet = True
    cfg.out = str(tmp_path / "mlp")
    run = mnistlab.train(cfg)
    assert run.summary["test_accuracy"] >= 0.97, run.summary
