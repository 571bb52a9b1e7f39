"""Running a model on preprocessed images: the device, autocast, batched logits and scores on one split.

Used by training (validation and test scoring), by :class:`mnistlab.runs.Run` (predict, evaluate) and so by
the app. It knows nothing of training: models here only ever run forward, in eval mode.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import ConfigError
from mnistlab.models.committee import Committee


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else is passed to torch.device as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but torch sees no CUDA device")
    return device


def autocast_for(device: torch.device, amp: bool, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp``; a no-op context otherwise."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


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
def score_sums(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000, amp: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy (), correct count (), predictions (N,)) on the model's device.

    Sums, not means: a distributed run adds the shards' sums first and divides once.
    """
    logits = predict_logits(model, images, batch_size, amp)  # (N, 10)
    labels = labels.to(logits.device)
    predictions = logits.argmax(dim=1)
    loss_sum = F.cross_entropy(logits, labels, reduction="sum")  # nats, summed over the N images
    return loss_sum, (predictions == labels).sum(), predictions


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000, amp: bool = False
) -> dict:
    """Mean cross-entropy (nats/image) and accuracy on one split; also the predictions (N,) on CPU."""
    loss_sum, correct, predictions = score_sums(model, images, labels, batch_size, amp)
    count = max(labels.shape[0], 1)
    return {
        "loss": loss_sum.item() / count,
        "accuracy": correct.item() / count,
        "predictions": predictions.cpu(),
    }


@torch.no_grad()
def member_log_probs(committee: Committee, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """(M, N, 10): each member's log-probabilities for preprocessed images (N, 1, 28, 28), in eval mode."""
    if committee.training:
        committee.eval()
    device = next(committee.parameters()).device
    chunks = [
        committee.member_log_probs(images[start : start + batch_size].to(device))
        for start in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(chunks, dim=1) if chunks else torch.zeros((len(committee.members), 0, 10), device=device)


def score_committee(
    committee: Committee, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000
) -> dict:
    """:func:`evaluate` for a committee, plus each member's predictions (M, N) from the same forward passes."""
    members = member_log_probs(committee, images, batch_size)  # (M, N, 10)
    logits = committee.combine(members)  # (N, 10)
    labels = labels.to(logits.device)
    predictions = logits.argmax(dim=1)
    count = max(labels.shape[0], 1)
    return {
        "loss": F.cross_entropy(logits, labels, reduction="sum").item() / count,
        "accuracy": (predictions == labels).sum().item() / count,
        "predictions": predictions.cpu(),
        "member_predictions": members.argmax(dim=2).cpu(),
    }
