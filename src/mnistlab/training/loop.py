"""One epoch of mini-batch training, and evaluation.

Both functions set ``model.train()`` / ``model.eval()`` themselves. Loss and accuracy are accumulated on the
device and read back once at the end, so there is no host sync inside the epoch (it matters on GPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
# One training step on one batch: (x (B, 1, 28, 28), y (B,)) -> (loss (), float32 logits (B, 10)).
StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def autocast_for(device: torch.device, amp: bool, cache: bool = True) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


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
    on_step: Callable[[int], None] | None = None,
    step_fn: StepFn | None = None,
) -> dict:
    """Train on every mini-batch once; the gradient of each step is the batch-mean gradient.

    Returns mean training loss and accuracy over the images seen (the loss of each batch as computed
    before its update, weighted by batch size), the step count and the per-step losses. ``step_fn`` replaces
    the eager step, e.g. with a CUDA-graph replay (:class:`mnistlab.training.graphs.GraphedStep`); it must
    train on the batch exactly as :func:`eager_step` does and return a loss tensor that the next step leaves
    alone (every step's loss is kept until the epoch ends).
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    step_losses: list[torch.Tensor] = []
    seen = 0
    for step, (x, y) in enumerate(batches):
        if max_steps is not None and step >= max_steps:
            break
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
            on_step(step + 1)
    losses = torch.stack(step_losses).cpu() if step_losses else torch.zeros(0)
    return {
        "loss": loss_sum.item() / max(seen, 1),
        "accuracy": correct.item() / max(seen, 1),
        "steps": len(step_losses),
        "images": seen,
        "step_losses": losses.tolist(),
    }


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 2000, amp: bool = False
) -> torch.Tensor:
    """Logits (N, 10) for preprocessed images (N, 1, 28, 28), in eval mode, batched to bound memory."""
    if model.training:  # eval() walks every submodule: ~60 us, a tenth of a one-image prediction on CPU
        model.eval()
    device = next(model.parameters()).device
    if 0 < images.shape[0] <= batch_size:  # one chunk: no list, no concatenation copy
        with autocast_for(device, amp):
            return model(images.to(device)).float()
    out = []
    for start in range(0, images.shape[0], batch_size):
        with autocast_for(device, amp):
            out.append(model(images[start : start + batch_size].to(device)).float())
    return torch.cat(out) if out else torch.zeros((0, 10), device=device)


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000, amp: bool = False
) -> dict:
    """Mean cross-entropy and accuracy on one split; also returns the predictions (N,) on CPU."""
    logits = predict_logits(model, images, batch_size, amp)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / max(labels.shape[0], 1)
    predictions = logits.argmax(dim=1)
    accuracy = (predictions == labels).sum().item() / max(labels.shape[0], 1)
    return {"loss": loss, "accuracy": accuracy, "predictions": predictions.cpu()}
