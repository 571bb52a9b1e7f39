"""Early stopping on a validation metric, keeping the best weights in memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class EarlyStopping:
    """Track the monitored validation value; say when to stop; remember the best weights.

    ``mode`` is "min" for losses and "max" for accuracies. ``patience=None`` never stops early but still
    keeps the best weights, so the final model is always the one validation preferred.
    """

    mode: str = "max"
    patience: int | None = None
    min_delta: float = 0.0
    best_value: float = field(default=math.nan)
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def improved(self, value: float) -> bool:
        if math.isnan(self.best_value):
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(self, value: float, epoch: int, model: nn.Module) -> bool:
        """Record one epoch's value; return True when it is the new best (and snapshot the weights)."""
        if self.improved(value):
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state(self) -> dict[str, float | int]:
        """JSON-able counters (the weights are saved separately), for resuming."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}
