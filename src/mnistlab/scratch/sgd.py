"""Mini-batch SGD with momentum, Nesterov momentum and L2 weight decay: exactly ``torch.optim.SGD``'s update.

For each parameter p with gradient g (dampening 0, as torch's default):

    g <- g + weight_decay * p              L2, added to the gradient, so momentum carries it too
    v <- momentum * v + g                  v starts at 0, so the first step's v is g, as in torch
    p <- p - lr * (g + momentum * v)       Nesterov: step with the look-ahead gradient
    p <- p - lr * v                        plain momentum
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SGD:
    def __init__(
        self,
        parameters: Sequence[np.ndarray],
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.parameters = list(parameters)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = [np.zeros_like(p) for p in self.parameters]  # v, one per parameter
        self._scratch = [np.empty_like(p) for p in self.parameters]  # lr * step, without a new array

    def step(self, gradients: Sequence[np.ndarray], lr: float) -> None:
        """Update every parameter in place. ``gradients`` are used as scratch space (they are overwritten)."""
        for p, g, v, tmp in zip(self.parameters, gradients, self.velocity, self._scratch, strict=True):
            if self.weight_decay:
                g += np.multiply(p, self.weight_decay, out=tmp)  # g + wd * p
            step = g
            if self.momentum:
                v *= self.momentum
                v += g  # v <- momentum * v + g
                if self.nesterov:
                    g += np.multiply(v, self.momentum, out=tmp)  # g + momentum * v
                else:
                    step = v
            p -= np.multiply(step, lr, out=tmp)  # p <- p - lr * step
