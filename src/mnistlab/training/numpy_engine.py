"""Train the mlp with the NumPy engine (:mod:`mnistlab.scratch`) on exactly what the torch path would use.

Given a :class:`TrainConfig`, the engine takes from the torch path everything that is not the network's
arithmetic: the data split and preprocessing (:func:`prepare_data`), the initial weights (``build_model``
after ``torch.manual_seed(config.seed)``, as :func:`mnistlab.training.fit.fit` does), each epoch's batch order
(``torch.randperm`` from a generator seeded with ``config.seed + 1``, as :meth:`TensorSplit.batches` draws it)
and the per-step learning rate (:func:`lr_multiplier`). So a NumPy run and ``mnistlab train`` with the same
config follow the same trajectory, up to float rounding; the tests check the per-step losses.

Two ways in:

- ``mnistlab train --engine numpy`` / ``mnistlab.train(config)`` with ``config.engine = "numpy"``: fit()
  builds a :class:`NumpyTrainer` (:func:`build_numpy_trainer`) where it would build the torch Trainer, and
  the rest of the story is fit()'s own: early stopping, metrics, divergence, one test score, a normal run
  folder. Those runs are not resumable (see :class:`NumpyTrainer`).
- :func:`train_numpy`: the engine's own loop (:func:`mnistlab.scratch.fit`), no run folder; for the bench,
  the lab and the notebook.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.models import build_model, model_from_config
from mnistlab.recipes import recipe
from mnistlab.scratch import (
    MLP,
    SGD,
    FitResult,
    batch_indices,
    evaluate,
    fit,
    load_state_dict,
    to_state_dict,
    train_epoch,
)
from mnistlab.training.distributed import SingleProcess, env_ranks
from mnistlab.training.optim import lr_multiplier
from mnistlab.training.progress import Reporter
from mnistlab.training.trainer import EpochResult, Splits, prepare_data, step_cap

CPU = torch.device("cpu")


def check_config(config: TrainConfig) -> None:
    """The engine trains the lecture's MLP with SGD in one CPU process: one line naming every flag it cannot do."""
    m, o = config.model, config.optim
    world = env_ranks(os.environ)[1]  # > 1 under torchrun (--nproc)
    problems = [
        (m.name != "mlp", f"--model {m.name} (only mlp)"),
        (o.optimizer != "sgd", f"--optimizer {o.optimizer} (only sgd)"),
        # unset would mean the torch mlp's default dropout (0.2): the run folder must say what was trained
        (m.dropout != 0.0, f"--dropout {'unset' if m.dropout is None else m.dropout} (only 0)"),
        (o.label_smoothing > 0, f"--label-smoothing {o.label_smoothing} (only 0)"),
        (config.amp, "--amp"),
        (config.compile, "--compile"),
        (config.channels_last, "--channels-last"),
        (config.device.startswith("cuda"), f"--device {config.device} (the CPU only: cpu or auto)"),
        (world > 1, f"--nproc / torchrun ({world} processes; one only)"),
        (config.augment.kind != "none", f"--augment {config.augment.kind} (none only)"),
        (m.input_width is not None, f"--input-width {m.input_width} (the digits as written only)"),
        (any(config.member_input_widths or ()), "--member-input-widths (the digits as written only)"),
    ]
    bad = [what for failed, what in problems if failed]
    if bad:
        raise ConfigError(
            f"--engine numpy does not support {'; '.join(bad)}. Its own recipe: `mnistlab train --engine "
            "numpy`, or mnistlab.recipe('mlp', engine='numpy')"
        )


def blas_threads(config: TrainConfig) -> contextlib.AbstractContextManager:
    """Limit NumPy's BLAS to ``config.threads`` threads inside the block for a numpy-engine run (else no-op).

    The engine's time is in BLAS matrix products; torch.set_num_threads does not reach NumPy's BLAS.
    """
    if config.engine != "numpy" or config.threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=config.threads, user_api="blas")


def blas_environment() -> dict:
    """What the run folder records about the engine's arithmetic: NumPy's version and its BLAS library."""
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return {
        "numpy": np.__version__,
        "blas": [f"{i.get('internal_api')} {i.get('version')}" for i in blas],
        "blas_threads": max((i.get("num_threads") or 1 for i in blas), default=1),
    }


def initial_mlp(config: TrainConfig, dtype: type = np.float32) -> MLP:
    """The NumPy MLP holding the very weights ``mnistlab train`` would start from with this config."""
    torch.manual_seed(config.seed)  # as fit() does before building the model
    model = build_model("mlp", hidden=config.model.hidden, dropout=0.0, width=config.model.width)
    hidden = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    net = MLP(hidden=hidden, dtype=dtype)
    load_state_dict(net, {k: v.numpy() for k, v in model.state_dict().items()})
    return net


def torch_orders(n: int, seed: int) -> Iterator[np.ndarray]:
    """Each epoch's permutation of 0..n-1, drawn as fit() draws it: one randperm per epoch from seed + 1."""
    generator = torch.Generator().manual_seed(seed + 1)
    while True:
        yield torch.randperm(n, generator=generator).numpy()


def as_arrays(split, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed TensorSplit as (x (N, 784), labels (N,) int64) NumPy arrays on the CPU."""
    x = split.images.detach().cpu().reshape(len(split), -1).numpy().astype(dtype, copy=False)
    return x, split.labels.cpu().numpy()


def engine_parts(config: TrainConfig, splits: Splits, dtype: type) -> tuple[MLP, SGD, Callable[[int], float]]:
    """The network at its initial weights, its SGD, and the learning rate of each global step (0, 1, ...)."""
    net = initial_mlp(config, dtype)
    o = config.optim
    sgd = SGD(
        net.parameters(),
        momentum=o.momentum,
        nesterov=o.nesterov and o.momentum > 0,
        weight_decay=o.weight_decay,
    )
    steps_per_epoch = splits.train.num_batches(config.batch_size)  # whole epochs, as the torch schedule
    multiplier = lr_multiplier(o, steps_per_epoch, steps_per_epoch * config.epochs)
    return net, sgd, lambda step: o.lr * multiplier(step)


# ---- through fit(): the engine behind the Trainer interface ------------------------------------------------
@dataclass
class NumpyTrainer:
    """The NumPy engine behind the interface fit() trains through (:class:`~mnistlab.training.trainer.Trainer`'s
    ``config``, ``model``, ``dist``, ``last_epoch`` and ``epoch``).

    The engine trains ``net``. ``model`` is the torch mlp the run folder stores; it gets a copy of ``net``'s
    weights after every epoch, so early stopping snapshots it, the test set is scored on it and
    model.safetensors holds it: predict, serve, report and export load exactly what was scored.

    Not resumable: fit() writes no last.safetensors for these runs and refuses ``--resume``. The recipe trains
    in seconds (5.0 s for 8 epochs on one loaded core), and a resume that continues the same trajectory would
    need the SGD velocity, the order generator and the step count in a second checkpoint format (the
    checkpoint is built on torch's optimiser and scheduler), with its own test, for no run that takes long.
    """

    config: TrainConfig
    net: MLP
    sgd: SGD
    lr: Callable[[int], float]  # global step -> learning rate
    train: tuple[np.ndarray, np.ndarray]  # x (N, 784) float32, labels (N,) int64
    val: tuple[np.ndarray, np.ndarray] | None
    orders: Iterator[np.ndarray]  # each epoch's permutation of the training rows
    model: nn.Module  # the torch mlp holding net's weights as of the last epoch
    dist: SingleProcess
    step: int = 0  # optimiser steps taken: the schedule's position

    @property
    def last_epoch(self) -> int:
        return 1 if self.config.dry_run else self.config.epochs

    @property
    def steps_per_epoch(self) -> int:
        """ceil(N / batch) for a whole epoch; fewer with max_steps or a dry run (as the torch Trainer)."""
        full = math.ceil(len(self.train[1]) / self.config.batch_size)
        limit = step_cap(self.config.dry_run_batches if self.config.dry_run else self.config.max_steps)
        return min(full, limit) if limit else full

    def epoch(self, number: int, reporter: Reporter | None = None) -> EpochResult:
        """One epoch of SGD steps on the seeded order, then validation; the record is fit()'s metrics line."""
        reporter = reporter or Reporter(quiet=True)
        batches = itertools.islice(
            batch_indices(next(self.orders), self.config.batch_size), self.steps_per_epoch
        )
        t0 = time.perf_counter()
        # A diverging run overflows to inf/NaN: fit() stops it after the epoch with one clear message.
        with (
            reporter.epoch_bar(f"epoch {number}/{self.last_epoch}", self.steps_per_epoch) as on_step,
            np.errstate(over="ignore", invalid="ignore"),
        ):
            stats = train_epoch(
                self.net, self.sgd, *self.train, _reported(batches, on_step), self.lr, self.step
            )
        first, self.step = self.step, self.step + stats["steps"]
        record = {
            "epoch": number,
            "train_loss": stats["loss"],
            "train_accuracy": stats["accuracy"],
            "steps": stats["steps"],
            "lr": self.lr(self.step),  # the next step's, as the torch path records it
            "lr_peak": max(map(self.lr, range(first, self.step)), default=self.lr(first)),
            "seconds": round(time.perf_counter() - t0, 4),
        }
        copy_weights(self.net, self.model)
        return EpochResult(record | self.validate(), stats["step_losses"])

    def validate(self) -> dict:
        """{"val_loss": nats/image, "val_accuracy": fraction} by the engine, or {} without a validation split."""
        if self.val is None:
            return {}
        x, y = self.val
        if self.config.dry_run:  # a few batches only, as the torch Trainer
            x, y = x[: self.config.eval_batch_size], y[: self.config.eval_batch_size]
        with np.errstate(over="ignore", invalid="ignore"):
            scores = evaluate(self.net, x, y, self.config.eval_batch_size)
        return {"val_loss": scores["loss"], "val_accuracy": scores["accuracy"]}


def _reported(batches: Iterable[np.ndarray], on_step: Callable[..., None] | None) -> Iterator[np.ndarray]:
    """The batches, telling the progress after each step: steps and images done (``on_step`` None: none)."""
    images = 0
    for done, rows in enumerate(batches, start=1):
        yield rows
        images += len(rows)
        if on_step is not None:
            on_step(done, images)


def build_numpy_trainer(
    config: TrainConfig, dist: SingleProcess, progress: bool = True
) -> tuple[Splits, NumpyTrainer]:
    """fit()'s build step for ``--engine numpy``: the torch path's data on the CPU, the engine at its start."""
    splits = prepare_data(config, CPU, progress=progress)
    net, sgd, lr = engine_parts(config, splits, np.float32)
    model = model_from_config(config.model)  # what read_model_file will build from the run's config
    copy_weights(net, model)
    val = as_arrays(splits.val) if splits.val is not None else None
    orders = torch_orders(len(splits.train), config.seed)
    return splits, NumpyTrainer(config, net, sgd, lr, as_arrays(splits.train), val, orders, model, dist)


# ---- on its own: the engine's loop ------------------------------------------------------------------------
@dataclass
class NumpyRun:
    net: MLP
    result: FitResult
    splits: Splits  # the torch path's preprocessed data (and its Preprocessor, for the run folder)


def train_numpy(config: TrainConfig, splits: Splits | None = None, dtype: type = np.float32) -> NumpyRun:
    """Train ``config``'s mlp with the NumPy engine; the best epoch (validation) is restored. No test scoring."""
    check_config(config.validate())
    splits = splits or prepare_data(config, CPU, progress=False)
    train = as_arrays(splits.train, dtype)
    val = as_arrays(splits.val, dtype) if splits.val is not None else None
    net, sgd, lr = engine_parts(config, splits, dtype)
    result = fit(
        net,
        sgd,
        train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=lr,
        val=val,
        orders=torch_orders(len(train[0]), config.seed),
        max_steps=step_cap(config.max_steps),
        monitor=config.monitor,
    )
    return NumpyRun(net, result, splits)


def copy_weights(net: MLP, model: nn.Module) -> None:
    """Copy ``net``'s weights into the torch mlp ``model`` (built without dropout), in place."""
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in to_state_dict(net).items()})


def to_torch_model(net: MLP) -> nn.Module:
    """The torch MLP (no dropout) holding ``net``'s weights: for predict/serve/report and the run folder."""
    model = build_model("mlp", hidden=net.hidden, dropout=0.0)
    copy_weights(net, model)
    return model


def numpy_recipe() -> TrainConfig:
    """The NumPy engine's recipe, ``recipe("mlp", engine="numpy")`` (its reasons are in recipes.py)."""
    return recipe("mlp", engine="numpy")
