"""The lecture's losses and their gradients: softmax cross-entropy from logits, and binary cross-entropy.

Why the loss takes logits: the softmax and the log are computed together, as ``z - logsumexp(z)``. Computing
``softmax`` first and then ``log`` would underflow to log(0) = -inf for a confident mistake, and ``exp`` of a
large logit overflows (float32 overflows at exp(89)); the log-sum-exp form does neither.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p = z - max(z) - log(sum(exp(z - max(z)))), row by row. logits (B, C) -> (B, C).

    Subtracting the row maximum changes nothing (softmax does not see a constant added to every logit) and
    makes the largest exponent exp(0) = 1, so nothing overflows.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)  # (B, C), every row's max is 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def one_hot(labels: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    """(B,) integer labels -> (B, C) rows with a single 1 at the label."""
    return np.eye(classes, dtype=dtype)[labels]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Batch-mean cross-entropy -mean(log p[label]) and its gradient dL/dlogits (B, C).

    For one image, d(-log p_y)/dz = p - onehot(y); the batch mean divides every image's share by B.
    """
    batch, classes = logits.shape
    log_p = log_softmax(logits)  # (B, C)
    loss = -log_p[np.arange(batch), labels].mean()
    p = np.exp(log_p)  # (B, C), softmax probabilities
    dlogits = (p - one_hot(labels, classes, logits.dtype)) / batch  # (B, C)
    return float(loss), dlogits


def cross_entropy_sum(logits: np.ndarray, labels: np.ndarray) -> float:
    """Summed cross-entropy of a batch, in float64 (for evaluation over many batches)."""
    log_p = log_softmax(logits.astype(np.float64, copy=False))
    return float(-log_p[np.arange(len(labels)), labels].sum())


def binary_cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    """The lecture's formula, mean of -[y log p + (1 - y) log(1 - p)]; p = predicted P(class 1) in (0, 1).

    Like torch's ``binary_cross_entropy`` the logs are clamped at -100, so p = 0 or 1 gives a large finite loss.
    """
    with np.errstate(divide="ignore"):  # log(0) = -inf, then clamped
        log_p, log_1mp = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
    return float(-(y * log_p + (1 - y) * log_1mp).mean())


def binary_cross_entropy_with_logits(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The same loss from the logit z (p = sigmoid(z)), stable for any z, and its gradient (p - y) / N.

    -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + exp(-|z|)): no exp of a large number.
    """
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))  # (N,)
    p = 0.5 * (1 + np.tanh(0.5 * z))  # sigmoid(z), without overflow for large |z|
    return float(loss.mean()), (p - y) / z.size
