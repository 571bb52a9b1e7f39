"""What every lab experiment shares: its output folder, the data, and training through the one epoch loop
(:class:`mnistlab.training.Trainer`, the same one :func:`mnistlab.train` uses).

An experiment writes into one folder: PNG figures, ``report.html`` / ``report.md``, the raw numbers
(CSV/JSON) and ``config.json``. The test split is scored once per trained model, at the end, never to choose
anything; selection (early stopping, "time to reach X %") uses the validation split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.data import TensorSplit
from mnistlab.evaluation.report import write_json
from mnistlab.inference import evaluate
from mnistlab.lab.options import LabOptions
from mnistlab.runs import create_run_dir
from mnistlab.training import build_trainer, prepare_data
from mnistlab.training.trainer import Splits, smoke_steps


def open_out_dir(name: str, options: LabOptions) -> Path:
    """The experiment's folder: ``options.out`` (new or empty) or a new lab/<timestamp>-<name>."""
    return create_run_dir(options.out, name, root="lab")


# MNISTLAB_SMOKE_STEPS (a smoke test, see mnistlab.training.trainer.smoke_steps) also shrinks each
# experiment's own settings, which cost more than the training steps: evaluations, seeds, repeats.
SMOKE_CAPS = {
    "train_subset": 1000,  # images
    "batch1_subset": 200,  # images
    "val_size": 1000,  # images
    "epochs": 2,
    "max_epochs": 1,
    "train_epochs": 1,
    "seeds": 1,
    "repeats": 2,  # mini-batches per batch size
    "patience": 1,  # epochs
}


def smoke_settings(settings: dict) -> dict:
    """``settings`` as they are, or, under a smoke test, with every size capped (:data:`SMOKE_CAPS`) and only
    the first three batch sizes: each experiment then runs its whole code path in seconds. The numbers it
    gives mean nothing; config.json records the settings used and ``smoke_steps``."""
    if not smoke_steps():
        return settings
    out = dict(settings, smoke_steps=smoke_steps())
    for key, cap in SMOKE_CAPS.items():
        if key in out:
            out[key] = cap if out[key] is None else min(out[key], cap)
    if "batch_sizes" in out:
        out["batch_sizes"] = out["batch_sizes"][:3]
    return out


def write_config(out: Path, name: str, options: LabOptions, settings: dict) -> None:
    """config.json: the experiment, its options, and every setting that shaped the numbers."""
    write_json(
        out / "config.json",
        {
            "experiment": name,
            "quick": options.quick,
            "seed": options.seed,
            "lr_scaling": options.lr_scaling,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        | settings,
    )


def load_splits(config: TrainConfig) -> Splits:
    """Train/val/test tensors preprocessed as ``config.data`` says (statistics from the train split only)."""
    return prepare_data(config, torch.device("cpu"), progress=False)


@dataclass
class EpochResult:
    epoch: int
    step_losses: list[float]  # per optimiser step, nats/image (batch mean)
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float  # wall time of the training epoch only (no evaluation)
    steps: int

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "step_losses"}


def train_epochs(
    model: nn.Module,
    train: TensorSplit,
    val: TensorSplit,
    config: TrainConfig,
    *,
    epochs: int,
    on_epoch: Callable[[EpochResult], bool | None] | None = None,
) -> list[EpochResult]:
    """Train ``model`` for up to ``epochs`` epochs of ``config`` (the schedule spans them); val after each.

    Stops early when the loss becomes non-finite (the result's losses then show nan/inf) or when
    ``on_epoch`` returns True. The epoch is :meth:`Trainer.epoch`, as in :func:`mnistlab.train`: the same
    steps, the same data order (its own generator, seeded with ``config.seed + 1``).
    """
    trainer = build_trainer(dataclasses.replace(config, epochs=epochs), model, train, val)
    results: list[EpochResult] = []
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "steps")
    for epoch in range(1, epochs + 1):
        done = trainer.epoch(epoch)
        results.append(EpochResult(epoch, done.step_losses, *(done.record[k] for k in keys)))
        if not math.isfinite(done.record["train_loss"]):
            break
        if on_epoch is not None and on_epoch(results[-1]):
            break
    return results


def test_accuracy(model: nn.Module, test: TensorSplit) -> float:
    """Score the test split once (callers do this once per trained model, after training)."""
    return evaluate(model, test.images, test.labels)["accuracy"]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
