"""One epoch of mini-batch training: the step, and the sums an epoch reports.

:func:`train_one_epoch` sets ``model.train()`` itself. Loss and accuracy are accumulated on the device and read
back once at the end, so there is no host sync inside the epoch (it matters on GPU). It returns *sums*; the
means are taken once, by :class:`EpochSums`, after a distributed run has added up its ranks' sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.inference import autocast_for
from mnistlab.testhooks import crash_point

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
# One training step on one batch: (x (B, 1, 28, 28), y (B,)) -> (loss (), float32 logits (B, 10)).
StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochSums:
    """What one epoch of training adds up. Each batch's loss is its mean as computed before its update."""

    loss_sum: float  # nats: sum over batches of (batch-mean loss x batch size)
    correct: int  # images whose argmax matched the label
    count: int  # images seen (a distributed run counts its padding images too)
    steps: int  # optimiser updates
    step_losses: list[float] = field(default_factory=list)  # per step, batch-mean nats; this process's own
    lr_peak: float = 0.0  # the largest learning rate any step of the epoch used

    @property
    def loss(self) -> float:
        """Mean training loss, nats per image."""
        return self.loss_sum / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)


def forward_backward(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    amp: bool = False,
    autocast_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, batch-mean cross-entropy and backward into fresh gradients; returns (loss (), logits (B, 10))."""
    with autocast_for(x.device, amp, cache=autocast_cache):
        logits = model(x)  # (B, 10)
    # Under bf16 autocast the logits are bf16; the softmax and loss are computed in float32.
    logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)  # mean over the batch
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return loss, logits


def eager_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`forward_backward`, then the optimiser step: one mini-batch SGD update."""
    loss, logits = forward_backward(model, optimizer, x, y, label_smoothing=label_smoothing, amp=amp)
    optimizer.step()
    return loss, logits


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    label_smoothing: float = 0.0,
    amp: bool = False,
    max_steps: int | None = None,
    on_step: Callable[[int, int, list[torch.Tensor]], None] | None = None,
    step_fn: StepFn | None = None,
) -> EpochSums:
    """Train on every mini-batch once; the gradient of each step is the batch-mean gradient.

    Returns the epoch's sums: loss x images, correct answers, images and steps, plus the per-step losses.
    ``step_fn`` replaces the eager step, e.g. with a CUDA-graph replay (:class:`mnistlab.training.graphs.GraphedStep`); it must
    train on the batch exactly as :func:`eager_step` does and return a loss tensor that the next step leaves
    alone (every step's loss is kept until the epoch ends). ``on_step(steps, images, step_losses)`` is called
    after each step with the steps and images done so far and every step's loss tensor (still on the device:
    reading them is the caller's choice, e.g. a progress line every few seconds).
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    step_losses: list[torch.Tensor] = []
    seen, lr_peak = 0, 0.0
    for step, (x, y) in enumerate(batches):
        if max_steps is not None and step >= max_steps:
            break
        lr_peak = max(lr_peak, optimizer.param_groups[0]["lr"])  # the lr this step uses (a float)
        if step_fn is None:
            loss, logits = eager_step(model, optimizer, x, y, label_smoothing=label_smoothing, amp=amp)
        else:
            loss, logits = step_fn(x, y)
        if scheduler is not None:
            scheduler.step()
        detached = loss.detach()
        step_losses.append(detached)
        loss_sum += detached * y.shape[0]
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += y.shape[0]
        if on_step is not None:
            on_step(step + 1, seen, step_losses)
        crash_point("step")  # test-only: the crash-matrix tests kill the process mid-epoch here
    losses = torch.stack(step_losses).cpu() if step_losses else torch.zeros(0)
    return EpochSums(loss_sum.item(), int(correct.item()), seen, len(step_losses), losses.tolist(), lr_peak)
