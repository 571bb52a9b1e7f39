"""Input preparation in NumPy: the torch path's standardisation, and mini-batches from an index order.

:class:`Standardizer` computes the same statistics as :class:`mnistlab.data.Preprocessor` in its default
``standardize`` mode (that module imports torch, so the engine cannot use it; tests check the two agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

MIN_STD = 1.0  # pixel units; the same clamp as mnistlab.data.preprocessing.MIN_STD (always-0 border pixels)
_CHUNK = 4096  # images per float64 chunk when fitting (26 MB, not 345 MB for 55,000 images)


def _pixel_mean_var(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and population variance, float64 (D,), of images (N, D); two passes, in chunks."""
    mean = flat.mean(axis=0, dtype=np.float64)
    sq = np.zeros_like(mean)
    for i in range(0, len(flat), _CHUNK):
        d = flat[i : i + _CHUNK].astype(np.float64) - mean  # (chunk, D)
        sq += (d * d).sum(axis=0)
    return mean, sq / len(flat)


@dataclass
class Standardizer:
    """x -> (x - mean) / std on flattened images, with mean/std in pixel units fitted on the training split."""

    mean: np.ndarray  # float32, () for one global value or (784,) per pixel
    std: np.ndarray  # float32, same shape, >= MIN_STD

    @classmethod
    def fit(cls, images: np.ndarray, per_pixel: bool = False) -> Standardizer:
        """Fit on training images (N, 28, 28) or (N, 784), pixels 0-255. Pass the training split only."""
        flat = images.reshape(len(images), -1)
        mean, var = _pixel_mean_var(flat)
        if not per_pixel:  # pool the pixels: law of total variance
            mean, var = mean.mean(), (var + (mean - mean.mean()) ** 2).mean()
        std = np.maximum(np.sqrt(var), MIN_STD)
        return cls(np.asarray(mean, np.float32), np.asarray(std, np.float32))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Float32 (N, 784), standardised, from pixels (N, 28, 28), (N, 1, 28, 28) or (N, 784)."""
        x = images.reshape(len(images), -1).astype(np.float32)
        x -= self.mean
        x /= self.std
        return x


def batch_indices(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Contiguous slices of one epoch's index order; the last, smaller batch is kept (as the torch path does)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def shuffled_orders(n: int, seed: int) -> Iterator[np.ndarray]:
    """One fresh permutation of 0..n-1 per epoch, from a seeded NumPy generator (the engine's own default)."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n)
