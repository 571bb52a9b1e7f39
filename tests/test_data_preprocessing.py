"""Preprocessor: fitted on the training split only, correct units, stored and restored exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab.data import Preprocessor, split_train_val
from mnistlab.data.preprocessing import MIN_STD
from mnistlab.errors import DataError


@pytest.fixture
def images() -> torch.Tensor:
    """(500, 28, 28) uint8, blank 2-pixel top border like MNIST; the last 100 are brighter (a 'test set')."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    x[400:] = np.maximum(x[400:], 128)
    x[:, :2, :] = 0
    return torch.from_numpy(x)


def test_fit_uses_only_the_given_split(images: torch.Tensor) -> None:
    train_idx, _ = split_train_val(400, 50, seed=0)
    train = images[:400][train_idx]
    pre = Preprocessor.fit(train)
    expected = train.numpy().astype(np.float64)
    assert pre.mean.item() == pytest.approx(expected.mean(), rel=1e-6)
    assert pre.std.item() == pytest.approx(expected.std(), rel=1e-6)
    assert pre.mean.item() != pytest.approx(images.double().mean().item(), rel=1e-3)  # not the full set
    assert pre.mean.dtype == torch.float32 and pre.mean.shape == ()


def test_standardized_train_split_has_zero_mean_unit_std(images: torch.Tensor) -> None:
    pre = Preprocessor.fit(images[:400])
    out = pre(images[:400])
    assert out.shape == (400, 1, 28, 28) and out.dtype == torch.float32
    assert out.double().mean().item() == pytest.approx(0.0, abs=1e-5)
    assert out.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_per_pixel_stats_and_border_clamp(images: torch.Tensor) -> None:
    pre = Preprocessor.fit(images[:400], stats="per-pixel")
    x = images[:400].numpy().astype(np.float64)
    assert pre.mean.shape == (28, 28)
    np.testing.assert_allclose(pre.mean.numpy(), x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(pre.std.numpy()[2:], x.std(0)[2:], rtol=1e-6)
    assert torch.all(pre.std[:2] == MIN_STD)  # blank border: std 0 clamped, no division by zero
    out = pre(images[:400])
    assert torch.isfinite(out).all()
    assert out[:, 0, 2:].mean((0,)).abs().max() < 1e-4  # each non-blank pixel is zero-mean


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("raw", lambda x, m, s: x),
        ("scale", lambda x, m, s: x / 255),
        ("center", lambda x, m, s: x - m),
        ("standardize", lambda x, m, s: (x - m) / s),
    ],
)
def test_modes_and_input_forms(images: torch.Tensor, mode: str, expected) -> None:
    pre = Preprocessor.fit(images[:400], mode=mode)  # type: ignore[arg-type]
    x = images[400:].float()
    want = expected(x, pre.mean, pre.std).unsqueeze(1)
    for form in (images[400:], x, x.unsqueeze(1), images[400:].numpy()):
        torch.testing.assert_close(pre(form), want)
    pre(x)
    torch.testing.assert_close(x, images[400:].float())  # the caller's float tensor is untouched


def test_state_round_trip(images: torch.Tensor) -> None:
    import json

    pre = Preprocessor.fit(images[:400], mode="center", stats="per-pixel")
    meta = json.loads(json.dumps(pre.metadata()))
    back = Preprocessor.from_state(meta, {k: v.clone() for k, v in pre.state_dict().items()})
    assert (back.mode, back.stats) == ("center", "per-pixel")
    torch.testing.assert_close(back(images[400:]), pre(images[400:]), rtol=0, atol=0)


def test_bad_mode_and_shape(images: torch.Tensor) -> None:
    with pytest.raises(DataError, match="unknown preprocessing mode 'whiten'"):
        Preprocessor.fit(images, mode="whiten")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="expected images"):
        Preprocessor()(torch.zeros(2, 3, 28, 28))
