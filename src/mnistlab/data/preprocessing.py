"""Pixel preprocessing, fitted on the training split and stored with the model.

Units: input pixels are 0-255 (uint8, or float in the same range). ``mean`` and ``std`` are in those pixel
units. The four modes:

* ``"standardize"``: (x - mean) / std, unitless, ~zero mean and unit variance on the training split;
* ``"center"``: x - mean, still in pixel units (range about -33..222 for MNIST's global mean of 33);
* ``"scale"``: x / 255, range 0..1;
* ``"raw"``: x as float, range 0..255.

Only ``standardize`` and ``center`` use the fitted statistics; they are fitted (and stored) for every mode
so a checkpoint always records what the training data looked like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
import torch

from mnistlab.config import Normalize as Mode  # the modes are declared once, with the config field
from mnistlab.config import NormStats as Stats
from mnistlab.errors import DataError

# MNIST's outer pixels are 0 in every training image, so their per-pixel std is 0 and (x - mean) / std would
# be 0/0 in training and a huge value for any test image with ink there. Clamping the std to 1 pixel unit
# (1/255 of the range) keeps such pixels bounded and leaves real pixels (std ~ 10-150) untouched.
MIN_STD = 1.0  # pixel units
FIT_CHUNK = 4096  # images per float64 chunk while fitting: 4096*784*8 B = 26 MB, not 345 MB for all 55,000
FORMAT = "mnistlab.preprocessor/1"


def _as_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) numpy view of uint8/float images given as (N, H, W) or (N, 1, H, W), on any device."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[0] == 0:
        raise DataError(
            f"cannot fit preprocessing on images of shape {x.shape}; expected (N, H, W) with N > 0"
        )
    return x


def _pixel_mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and population variance (ddof=0), both float64 (H, W), two passes in chunks.

    Two passes (mean first, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2.
    """
    n = x.shape[0]
    total = np.zeros(x.shape[1:], dtype=np.float64)
    for i in range(0, n, FIT_CHUNK):
        total += x[i : i + FIT_CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros_like(mean)
    for i in range(0, n, FIT_CHUNK):
        d = x[i : i + FIT_CHUNK].astype(np.float64) - mean
        sq += np.einsum("nhw,nhw->hw", d, d)
    return mean, sq / n


def _global_mean_var(pixel_mean: np.ndarray, pixel_var: np.ndarray) -> tuple[float, float]:
    """Pool per-pixel moments into one mean/variance over all pixels (law of total variance)."""
    mean = float(pixel_mean.mean())
    return mean, float((pixel_var + (pixel_mean - mean) ** 2).mean())


@dataclass
class Preprocessor:
    mode: Mode = "standardize"
    stats: Stats = "global"
    mean: torch.Tensor = field(default_factory=lambda: torch.tensor(0.0))  # () or (H, W), pixel units
    std: torch.Tensor = field(default_factory=lambda: torch.tensor(1.0))  # same shape, >= MIN_STD

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise DataError(
                f"unknown preprocessing mode {self.mode!r}; choose from {', '.join(get_args(Mode))}"
            )
        if self.stats not in get_args(Stats):
            raise DataError(
                f"unknown preprocessing stats {self.stats!r}; choose from {', '.join(get_args(Stats))}"
            )

    @classmethod
    def fit(
        cls, images: torch.Tensor | np.ndarray, mode: Mode = "standardize", stats: Stats = "global"
    ) -> Preprocessor:
        """Fit mean/std on ``images`` (N, H, W) in pixel units; pass the *training split only*."""
        cls(mode, stats)  # validates mode/stats before the expensive part
        pixel_mean, pixel_var = _pixel_mean_var(_as_numpy_images(images))
        if stats == "global":
            mean, var = _global_mean_var(pixel_mean, pixel_var)
            mean_t, std_t = torch.tensor(mean), torch.tensor(var).sqrt()
        else:
            mean_t, std_t = torch.from_numpy(pixel_mean), torch.from_numpy(pixel_var).sqrt()
        # computed in float64 for accuracy, stored float32 (the dtype the model sees)
        return cls(mode, stats, mean_t.float(), std_t.clamp(min=MIN_STD).float())

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """float32 (N, 1, H, W) on the input's device, from (N, H, W) or (N, 1, H, W) pixels 0-255."""
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        if x.ndim != 4 or x.shape[1] != 1:
            raise DataError(f"expected images (N, H, W) or (N, 1, H, W), got shape {tuple(x.shape)}")
        x = x.to(
            torch.float32, copy=True
        )  # copy: the in-place ops below must never touch the caller's tensor
        if self.mode == "scale":
            return x.div_(255.0)
        if self.mode in ("center", "standardize"):
            x.sub_(self.mean.to(x.device))
        if self.mode == "standardize":
            x.div_(self.std.to(x.device))
        return x

    # ---- persistence (safetensors: tensors + JSON-able metadata) ------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.detach().cpu().contiguous(), "std": self.std.detach().cpu().contiguous()}

    def metadata(self) -> dict[str, Any]:
        return {"format": FORMAT, "mode": self.mode, "stats": self.stats}

    @classmethod
    def from_state(cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Preprocessor:
        try:
            mode, stats, mean, std = metadata["mode"], metadata["stats"], tensors["mean"], tensors["std"]
        except KeyError as exc:
            raise DataError(f"stored preprocessing is incomplete: missing {exc}") from None
        return cls(mode, stats, mean.float(), std.float())
