"""Confusion matrix and per-class precision, recall and F1."""

from __future__ import annotations

import torch


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true label, column = predicted label."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> dict:
    """Confusion matrix plus per-class precision/recall/F1 (0 where a class is never predicted/present)."""
    cm = confusion_matrix(predictions, labels, num_classes).double()
    tp = cm.diag()
    predicted = cm.sum(dim=0)
    actual = cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return {
        "confusion_matrix": cm.long().tolist(),
        "per_class": [
            {
                "class": c,
                "precision": precision[c].item(),
                "recall": recall[c].item(),
                "f1": f1[c].item(),
                "support": int(actual[c].item()),
            }
            for c in range(num_classes)
        ],
        "macro_f1": f1.mean().item(),
    }
