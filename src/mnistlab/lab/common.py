"""What every lab experiment shares: its output folder, the data, and a small training loop built from
:func:`mnistlab.training.train_one_epoch` and :func:`mnistlab.training.evaluate`.

An experiment writes into one folder: PNG figures, ``report.html`` / ``report.md``, the raw numbers
(CSV/JSON) and ``config.json``. The test split is scored once per trained model, at the end, never to choose
anything; selection (early stopping, "time to reach X %") uses the validation split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.data import TensorSplit
from mnistlab.errors import ConfigError
from mnistlab.evaluation.report import write_json
from mnistlab.training import build_optimizer, evaluate, lr_multiplier, train_one_epoch
from mnistlab.training.fit import Splits, prepare_data


@dataclass
class LabOptions:
    quick: bool = False
    out: Path | None = None  # experiment folder; None = lab/<timestamp>-<name>
    seed: int = 0
    lr_scaling: str = "none"  # batch-size experiment: "none" | "linear" (full mode always shows both)
    threads: int | None = None


def open_out_dir(name: str, options: LabOptions) -> Path:
    out = options.out or Path("lab") / f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: output folder already exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
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
    """Train ``model`` for up to ``epochs`` with ``config.optim`` / ``config.batch_size``; val after each epoch.

    Stops early when the loss becomes non-finite (the result's losses then show nan/inf) or when
    ``on_epoch`` returns True. The data order comes from its own generator seeded with ``config.seed + 1``,
    as in :func:`mnistlab.training.fit.fit`.
    """
    optimizer = build_optimizer(model, config.optim)
    steps_per_epoch = train.num_batches(config.batch_size)
    fn = lr_multiplier(config.optim, steps_per_epoch, steps_per_epoch * epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    order = torch.Generator().manual_seed(config.seed + 1)
    results: list[EpochResult] = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        stats = train_one_epoch(
            model, train.batches(config.batch_size, shuffle=True, generator=order), optimizer, scheduler
        )
        seconds = time.perf_counter() - t0
        scores = evaluate(model, val.images, val.labels)
        result = EpochResult(
            epoch,
            stats["step_losses"],
            stats["loss"],
            stats["accuracy"],
            scores["loss"],
            scores["accuracy"],
            seconds,
            stats["steps"],
        )
        results.append(result)
        if not math.isfinite(stats["loss"]):
            break
        if on_epoch is not None and on_epoch(result):
            break
    return results


def test_accuracy(model: nn.Module, test: TensorSplit) -> float:
    """Score the test split once (callers do this once per trained model, after training)."""
    return evaluate(model, test.images, test.labels)["accuracy"]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
