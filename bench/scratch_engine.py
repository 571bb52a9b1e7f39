"""The NumPy engine's row of bench/run.py: its recipe trained per seed, exactly as the torch mlp is.

Each seed runs :func:`mnistlab.training.numpy_engine.train_numpy` on the recipe of
:func:`mnistlab.training.numpy_engine.numpy_recipe` (the same split, preprocessing and data order as
``mnistlab train``); the best epoch (validation) is restored and the test images are scored once.
``mnistlab train --engine numpy`` goes through the same engine parts and gives the same epochs
(tests/test_numpy_engine.py); this row calls the engine directly to time it without the run folder.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info

from mnistlab.scratch import evaluate
from mnistlab.training.numpy_engine import as_arrays, numpy_recipe, train_numpy
from mnistlab.training.trainer import prepare_data


def train_seed(seed: int, suite) -> dict:
    cfg = numpy_recipe()
    cfg.seed = seed
    if suite.train_subset is not None:
        cfg.data.train_subset = suite.train_subset
    if suite.val_size is not None:
        cfg.data.val_size = suite.val_size
    if suite.max_steps is not None:
        cfg.epochs, cfg.max_steps = 1, suite.max_steps  # smoke: a few steps of one epoch
    splits = prepare_data(cfg, torch.device("cpu"), progress=False)
    t0 = time.perf_counter()
    run = train_numpy(cfg, splits)
    wall = time.perf_counter() - t0  # every epoch's steps plus its validation scoring
    x_test, y_test = as_arrays(splits.test)
    if suite.test_subset is not None:
        x_test, y_test = x_test[: suite.test_subset], y_test[: suite.test_subset]
    history = run.result.history
    return {
        "seed": seed,
        "test_accuracy": evaluate(run.net, x_test, y_test)["accuracy"],  # once, best epoch restored
        "best_val_accuracy": max(h["val_accuracy"] for h in history),
        "best_epoch": run.result.best_epoch,
        "train_seconds": round(sum(h["seconds"] for h in history), 3),  # as the torch rows count it
        "fit_seconds": round(wall, 3),
        "epochs": len(history),
        "train_images": len(splits.train),
        "config": cfg.to_dict(),
    }


class NumpySeeds:
    """The engine's runs, one seed per :meth:`next`, so the harness can interleave them with scikit-learn."""

    def __init__(self, suite, log) -> None:
        self.suite, self.log, self.runs = suite, log, []

    def next(self) -> None:
        if len(self.runs) < self.suite.seeds:
            self.log(f"numpy engine seed {len(self.runs)} ...")
            self.runs.append(train_seed(len(self.runs), self.suite))

    def finish(self) -> dict:
        while len(self.runs) < self.suite.seeds:
            self.next()
        accuracies = [r["test_accuracy"] for r in self.runs]
        config = self.runs[0]["config"]
        return {
            "name": f"mnistlab.scratch NumPy MLP{tuple(config['model']['hidden'])} sgd",
            "hidden": list(config["model"]["hidden"]),
            "config": config,
            "runs": [{k: v for k, v in r.items() if k != "config"} for r in self.runs],
            "test_accuracy_mean": statistics.fmean(accuracies),
            "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "train_seconds_median": statistics.median(r["train_seconds"] for r in self.runs),
            "fit_seconds_median": statistics.median(r["fit_seconds"] for r in self.runs),
            "blas": [
                {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for i in threadpool_info()
                if i.get("user_api") == "blas"
            ],
            "numpy": np.__version__,
        }
