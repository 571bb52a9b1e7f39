"""Training the NumPy MLP: one step, one epoch, evaluation, and :func:`fit` (epochs with best-epoch choice).

The data order and the learning rate come from outside, so that a caller can feed the engine exactly the
batches and the per-step learning rates of the torch path (see :mod:`mnistlab.scratch_bridge`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from mnistlab.scratch.data import batch_indices, shuffled_orders
from mnistlab.scratch.layers import Buffer
from mnistlab.scratch.losses import cross_entropy_sum
from mnistlab.scratch.network import MLP
from mnistlab.scratch.sgd import SGD

LearningRate = float | Callable[[int], float]  # a constant, or step (0, 1, ... over all epochs) -> lr


def lr_at(lr: LearningRate, step: int) -> float:
    return lr(step) if callable(lr) else lr


def train_step(net: MLP, sgd: SGD, x: np.ndarray, labels: np.ndarray, lr: float) -> tuple[float, int]:
    """One mini-batch SGD update on (x (B, 784), labels (B,)); returns (loss before the update, # correct)."""
    loss, logits = net.loss_and_gradients(x, labels)  # gradients of the batch-mean loss
    correct = int((logits.argmax(axis=1) == labels).sum())
    sgd.step(net.gradients(), lr)
    return loss, correct


def train_epoch(
    net: MLP,
    sgd: SGD,
    x: np.ndarray,
    y: np.ndarray,
    batches: Iterable[np.ndarray],
    lr: LearningRate,
    first_step: int = 0,
) -> dict:
    """Train once on each batch of row indices; mean loss/accuracy weighted by batch size, and each step's loss."""
    rows = Buffer(x.shape[1], x.dtype)  # the gathered batch, reused every step
    losses, loss_sum, correct, seen = [], 0.0, 0, 0
    for step, idx in enumerate(batches, start=first_step):
        xb = np.take(x, idx, axis=0, out=rows.take(len(idx)))  # (B, 784), gathered without a new array
        loss, right = train_step(net, sgd, xb, y[idx], lr_at(lr, step))
        losses.append(loss)
        loss_sum, correct, seen = loss_sum + loss * len(idx), correct + right, seen + len(idx)
    return {
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "steps": len(losses),
        "images": seen,
        "step_losses": losses,
    }


def evaluate(net: MLP, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> dict:
    """Mean cross-entropy and accuracy of the network on one split."""
    logits = net.predict_logits(x, batch_size)
    return {
        "loss": cross_entropy_sum(logits, y) / max(len(y), 1),
        "accuracy": float((logits.argmax(axis=1) == y).mean()) if len(y) else 0.0,
    }


@dataclass
class FitResult:
    history: list[dict]  # one record per epoch: train_loss/accuracy, steps, lr, seconds, val_loss/accuracy
    step_losses: list[float]  # every step's batch-mean loss, before its update (nats/image)
    best_epoch: int  # the epoch whose weights the network holds at the end (by validation)
    weights: list[np.ndarray] = field(repr=False)  # copies of net.parameters() at best_epoch


def _improved(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def fit(
    net: MLP,
    sgd: SGD,
    train: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    lr: LearningRate,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    orders: Iterator[np.ndarray] | None = None,
    max_steps: int | None = None,
    monitor: str = "val_accuracy",
    seed: int = 0,
) -> FitResult:
    """Train for ``epochs``; keep and restore the weights of the best epoch on ``val`` (the last without val).

    ``train`` is (x (N, 784) float, labels (N,) int). ``orders`` yields each epoch's index order (e.g. the
    torch path's seeded permutation); by default a NumPy permutation seeded with ``seed``. ``lr`` is a
    constant or a function of the global step. ``max_steps`` caps the steps per epoch (smoke tests).
    """
    x, y = train
    orders = orders if orders is not None else shuffled_orders(len(x), seed)
    history: list[dict] = []
    step_losses: list[float] = []
    best_value, best_epoch, weights = None, 0, [p.copy() for p in net.parameters()]
    step = 0
    for epoch in range(1, epochs + 1):
        batches = batch_indices(next(orders), batch_size)
        if max_steps is not None:
            batches = itertools.islice(batches, max_steps)
        t0 = time.perf_counter()
        stats = train_epoch(net, sgd, x, y, batches, lr, first_step=step)
        record = {
            "epoch": epoch,
            "train_loss": stats["loss"],
            "train_accuracy": stats["accuracy"],
            "steps": stats["steps"],
            "lr": lr_at(lr, step + stats["steps"]),  # the next step's, as the torch path records it
            "lr_peak": max(
                (lr_at(lr, s) for s in range(step, step + stats["steps"])), default=lr_at(lr, step)
            ),
            "seconds": round(time.perf_counter() - t0, 4),
        }
        step += stats["steps"]
        step_losses += stats["step_losses"]
        if val is not None:
            scores = evaluate(net, *val)
            record.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        history.append(record)
        if not math.isfinite(stats["loss"]):
            break  # diverged: the caller sees the non-finite loss in the history
        value = record.get(monitor)
        if value is None or _improved(value, best_value, monitor):
            best_value, best_epoch, weights = value, epoch, [p.copy() for p in net.parameters()]
    for p, w in zip(net.parameters(), weights, strict=True):
        p[...] = w  # restore the best epoch's weights
    return FitResult(history, step_losses, best_epoch, weights)
