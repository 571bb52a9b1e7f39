"""The two layers of the lecture's network, each with its forward pass and its backward pass by hand.

A layer keeps what its backward pass needs from the forward pass. Output buffers are allocated once, for the
largest batch seen, and handed out as views of their first B rows, so a training step allocates (almost)
nothing and every matrix product runs in BLAS (``np.matmul(..., out=...)``).
"""

from __future__ import annotations

import numpy as np


class Buffer:
    """A (rows, width) array that grows to the largest batch; ``take(B)`` is a view of its first B rows."""

    def __init__(self, width: int, dtype: np.dtype) -> None:
        self.array = np.empty((0, width), dtype)

    def take(self, rows: int) -> np.ndarray:
        if rows > self.array.shape[0]:
            self.array = np.empty((rows, self.array.shape[1]), self.array.dtype)
        return self.array[:rows]  # the first rows of a C-contiguous array: still C-contiguous


class Linear:
    """z = x W^T + b. W is (out, in), as in ``torch.nn.Linear``, so weights convert by name."""

    def __init__(self, fan_in: int, fan_out: int, rng: np.random.Generator, dtype: np.dtype) -> None:
        # torch.nn.Linear's default initialisation: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype)  # (out, in)
        self.bias = rng.uniform(-bound, bound, fan_out).astype(dtype)  # (out,)
        self.grad_weight = np.zeros_like(self.weight)  # dL/dW, (out, in)
        self.grad_bias = np.zeros_like(self.bias)  # dL/db, (out,)
        self._x: np.ndarray | None = None  # the last input, (B, in): dL/dW needs it
        self._z = Buffer(fan_out, dtype)
        self._dx = Buffer(fan_in, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x  # (B, in)
        z = self._z.take(x.shape[0])
        np.matmul(x, self.weight.T, out=z)  # (B, in) @ (in, out) = (B, out)
        z += self.bias  # broadcast over the batch
        return z

    def backward(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Fill grad_weight and grad_bias from dL/dz (B, out); return dL/dx (B, in) if ``need_dx``."""
        assert self._x is not None, "backward before forward"
        # dL/dW = dz^T x: (out, B) @ (B, in) = (out, in), the sum over the batch of each image's outer product
        np.matmul(dz.T, self._x, out=self.grad_weight)
        dz.sum(axis=0, out=self.grad_bias)  # (out,): each image adds its dz
        if not need_dx:  # the first layer: nobody needs the gradient of the pixels
            return None
        dx = self._dx.take(dz.shape[0])
        np.matmul(dz, self.weight, out=dx)  # (B, out) @ (out, in) = (B, in)
        return dx


class ReLU:
    """h = max(z, 0), in place like ``nn.ReLU(inplace=True)``; the gradient passes where h > 0."""

    def __init__(self) -> None:
        self._h: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        self._h = np.maximum(z, 0, out=z)  # (B, width); z itself is not needed again
        return self._h

    def backward(self, dh: np.ndarray, need_dx: bool = True) -> np.ndarray:
        assert self._h is not None, "backward before forward"
        # dL/dz = dL/dh * 1[z > 0]; h > 0 exactly where z > 0. (A multiply: 5x faster than dh[h <= 0] = 0.)
        return np.multiply(dh, self._h > 0, out=dh)
