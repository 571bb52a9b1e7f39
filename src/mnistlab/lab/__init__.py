"""The lecture's experiments, each a function ``run(LabOptions) -> Report`` that writes one folder.

Imports data, models, training and evaluation; nothing below imports the lab.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mnistlab.errors import ConfigError
from mnistlab.lab.options import LabOptions

# name -> module; modules are imported on use so that `mnistlab lab loss` does not load the others
EXPERIMENTS = {
    "preprocessing": "mnistlab.lab.preprocessing",
    "batch-size": "mnistlab.lab.batch_size",
    "loss": "mnistlab.lab.loss",
    "overfitting": "mnistlab.lab.overfitting",
    "models": "mnistlab.lab.models",
    "gradient-noise": "mnistlab.lab.gradient_noise",
    "augment": "mnistlab.lab.augment",
    "committee": "mnistlab.lab.committee",
}


def experiment(name: str) -> Callable:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).run


def run_experiment(name: str, options: LabOptions):
    """Run experiment ``name``; returns its Report (the folder is ``options.out`` or lab/<stamp>-<name>)."""
    return experiment(name)(options)


__all__ = ["EXPERIMENTS", "LabOptions", "experiment", "run_experiment"]
