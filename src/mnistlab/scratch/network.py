"""The lecture's network: 784 pixels -> Linear, ReLU, ..., Linear -> 10 logits, forward and backward.

It knows nothing of training: :mod:`mnistlab.scratch.train` calls :meth:`MLP.loss_and_gradients` and hands
the gradients to an optimiser.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnistlab.scratch.layers import Linear, ReLU
from mnistlab.scratch.losses import softmax_cross_entropy


class MLP:
    """Linear and ReLU layers in turn; the last Linear returns logits (the softmax lives in the loss)."""

    def __init__(
        self,
        hidden: Sequence[int] = (256, 128),
        *,
        in_features: int = 28 * 28,
        num_classes: int = 10,
        seed: int = 0,
        dtype: type = np.float32,  # float64 for gradient checks
    ) -> None:
        rng = np.random.default_rng(seed)
        widths = [in_features, *hidden, num_classes]
        self.layers: list[Linear | ReLU] = []
        for i in range(len(widths) - 1):
            self.layers.append(Linear(widths[i], widths[i + 1], rng, np.dtype(dtype)))
            if i < len(widths) - 2:
                self.layers.append(ReLU())
        self.hidden, self.dtype = tuple(hidden), np.dtype(dtype)

    @property
    def linears(self) -> list[Linear]:
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def parameters(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...]: the arrays an optimiser updates in place."""
        return [p for layer in self.linears for p in (layer.weight, layer.bias)]

    def gradients(self) -> list[np.ndarray]:
        """[dL/dW1, dL/db1, ...], in the order of :meth:`parameters`, filled by :meth:`backward`."""
        return [g for layer in self.linears for g in (layer.grad_weight, layer.grad_bias)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits (B, 10) for inputs (B, 784). The result is a view of a buffer that the next call reuses."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dlogits: np.ndarray) -> None:
        """Chain rule from dL/dlogits (B, 10) back through every layer, filling :meth:`gradients`."""
        grad = dlogits
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        self.layers[0].backward(grad, need_dx=False)

    def loss_and_gradients(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """Batch-mean cross-entropy of (x (B, 784), labels (B,)) and its gradients; returns (loss, logits)."""
        logits = self.forward(x)  # (B, 10)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        self.backward(dlogits)
        return loss, logits

    def predict_logits(self, x: np.ndarray, batch_size: int = 2000) -> np.ndarray:
        """Logits (N, 10) of many inputs, in chunks of ``batch_size`` rows (bounded memory)."""
        out = np.empty((x.shape[0], self.linears[-1].weight.shape[0]), self.dtype)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = self.forward(x[start : start + batch_size])
        return out
