"""Random distortions of whole training batches, on the training device: affine and elastic.

Affine: rotation, zoom, horizontal shear and translation, as in Ciresan et al. (2011). Elastic: Simard,
Steinkraus and Platt (2003), "Best practices for convolutional neural networks applied to visual document
analysis": each pixel gets a random displacement drawn uniformly from [-1, 1] in x and in y, the field is
smoothed by a Gaussian of std ``sigma`` and multiplied by ``alpha`` (both in pixels). ``both`` adds the
elastic displacement to the affine map, so a batch costs one ``grid_sample`` whatever the kind.

Images arrive already preprocessed (e.g. standardised with the training split's mean and std). Sampling
outside the image must bring in *background* (pixel value 0), not the number 0, which is the preprocessed
value of a grey pixel; so a batch is mapped back to pixel units, distorted with zero padding and
preprocessed again with the same statistics (exact for global and per-pixel statistics alike).

Coordinates are in pixels: x to the right, y downwards (the row index), origin at the image centre. A
positive angle turns the digit counter-clockwise as displayed.

Randomness comes from the distorter's own ``torch.Generator`` on the images' device, seeded from the run
seed; its state is part of the resume checkpoint, so an interrupted run continues with the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from mnistlab.config import AugmentConfig
from mnistlab.data.preprocessing import Preprocessor

STATE_KEY = "rng.augment"  # the generator's state in the resume checkpoint (uint8 tensor)
GAUSSIAN_TRUNCATE = 4.0  # the smoothing kernel ends at 4 sigma, as scipy.ndimage.gaussian_filter's default
# The smoothed field is drawn in the basis of the smoothing matrix's leading eigenvectors; components whose
# eigenvalue is below this fraction of the largest carry < 1e-6 of the field's variance and are dropped.
EIGEN_TOLERANCE = 1e-3


# ---- affine ------------------------------------------------------------------------------------------------
def affine_theta(
    angle: torch.Tensor,
    zoom: torch.Tensor,
    shear: torch.Tensor,
    shift: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """``affine_grid`` matrices (B, 2, 3) for distortions given per image.

    angle (B,) degrees, counter-clockwise; zoom (B,) factor (> 1 enlarges the digit); shear (B,) degrees
    (x += tan(shear) * y); shift (B, 2) pixels (x, y). The digit moves by A = rotate @ shear @ zoom, then by
    ``shift``; a sampling grid needs the inverse map, output point -> input point: A^-1 (p - shift).
    """
    a, h = torch.deg2rad(angle), torch.tan(torch.deg2rad(shear))
    cos, sin = torch.cos(a), torch.sin(a)
    inv_zoom = 1.0 / zoom
    # The rotation [[cos, sin], [-sin, cos]] (counter-clockwise on screen, y down) has its transpose as
    # inverse; the shear [[1, h], [0, 1]] has [[1, -h], [0, 1]]. A^-1 = zoom^-1 shear^-1 rotate^-1:
    a00, a01 = (cos - h * sin) * inv_zoom, (-sin - h * cos) * inv_zoom
    a10, a11 = sin * inv_zoom, cos * inv_zoom
    # affine_grid works in normalised coordinates (align_corners=False): pixel offset from the centre
    # divided by half the side, D = diag(2 / W, 2 / H). theta = [D A^-1 D^-1 | -D A^-1 shift]; Python
    # floats only, so that no constant tensor is created (and copied to the device) per batch.
    height, width = size
    dx, dy = 2.0 / width, 2.0 / height
    sx, sy = shift[:, 0], shift[:, 1]
    rows = [
        torch.stack([a00, a01 * (dx / dy), -dx * (a00 * sx + a01 * sy)], -1),
        torch.stack([a10 * (dy / dx), a11, -dy * (a10 * sx + a11 * sy)], -1),
    ]
    return torch.stack(rows, -2)  # (B, 2, 3)


def _pixels_to_normalised(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(2,) factors (x, y) that turn a displacement in pixels into grid_sample's normalised units."""
    height, width = size
    return torch.tensor([2.0 / width, 2.0 / height], device=device)


def _base_grid(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(3, H*W): normalised (x, y, 1) of every output pixel centre, row-major, as ``affine_grid`` uses."""
    height, width = size
    xs = (torch.arange(width, device=device) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device) * 2 + 1) / height - 1
    return torch.stack(
        [xs.repeat(height), ys.repeat_interleave(width), torch.ones(height * width, device=device)]
    )


# ---- elastic -----------------------------------------------------------------------------------------------
def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian of std ``sigma`` (pixels), float64 (2r + 1,) with r = round(4 sigma), summing to 1."""
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_matrix(size: int, sigma: float) -> torch.Tensor:
    """float64 (size, size) G such that G @ v is v smoothed by a Gaussian of std ``sigma`` (pixels).

    Outside the image counts as 0 (scipy's ``gaussian_filter(mode="constant")``). A 2-D field f (H, W) is
    smoothed as G_H @ f @ G_W.T.
    """
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    index = torch.arange(size)
    distance = index[:, None] - index[None, :]  # (size, size): i - j
    return torch.where(distance.abs() <= radius, kernel[(distance + radius).clamp(0, 2 * radius)], 0.0)


def simard_field(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Simard's displacement field by its definition: noise (..., H, W) smoothed over the last two axes.

    The reference for :func:`smooth_basis` (tests and figures); training draws the same field more cheaply.
    """
    rows = gaussian_matrix(noise.shape[-2], sigma).to(noise)
    cols = gaussian_matrix(noise.shape[-1], sigma).to(noise)
    return rows @ noise @ cols.T


def smooth_basis(size: int, sigma: float) -> torch.Tensor:
    """float32 (size, k) L with G = Q diag(l) Q.T and L = Q_k diag(l_k): the k leading eigenpairs of G.

    Simard's field is G_H N G_W.T for noise N uniform in [-1, 1]; in the eigenbasis that is
    L_H (Q_H.T N Q_W) L_W.T, and the k x k block of Q.T N Q has uncorrelated entries of variance 1/3, the
    noise's own. So drawing that block directly as uniform noise C gives L_H C L_W.T, a field with the same
    covariance as Simard's (to 1e-6 of its variance) from k^2 random numbers instead of H * W: at sigma 6
    and 28 x 28, 49 instead of 784, which made the draw ~15x cheaper (it dominated the step on CPU).
    """
    values, vectors = torch.linalg.eigh(gaussian_matrix(size, sigma))  # ascending eigenvalues
    order = values.abs().argsort(descending=True)
    values, vectors = values[order], vectors[:, order]
    keep = int((values.abs() >= EIGEN_TOLERANCE * values.abs()[0]).sum())
    return (vectors[:, :keep] * values[:keep]).float()


def elastic_displacement_std(sigma: float) -> float:
    """Std of Simard's field per unit alpha (pixels), away from the border: uniform noise has variance 1/3,
    and a separable kernel k multiplies it by (sum k_i^2)^2."""
    return math.sqrt(1 / 3) * float((gaussian_kernel(sigma) ** 2).sum())


# ---- the distorter -----------------------------------------------------------------------------------------
class Distorter:
    """Distorts preprocessed training batches (B, 1, H, W); labels are untouched.

    ``distorter(x)`` returns a new tensor of the same shape, dtype and device; ``distorter.wrap(batches)``
    does it to every (x, y) of an epoch.
    """

    def __init__(
        self, config: AugmentConfig, preprocessor: Preprocessor, device: torch.device | str, seed: int
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # preprocessed = (pixels - mean) / std; per-pixel statistics broadcast as (1, 1, H, W).
        self.mean, self.std = _pixel_statistics(preprocessor, self.device)
        self._constants: dict[tuple[int, int], dict[str, torch.Tensor]] = {}  # per image size

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.sampling_grid(x.shape[0], (x.shape[-2], x.shape[-1]))
        pixels = x * self.std + self.mean  # back to pixel units: background 0, ink up to 255
        moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (moved - self.mean) / self.std

    def sampling_grid(self, batch: int, size: tuple[int, int]) -> torch.Tensor:
        """(B, H, W, 2) grid_sample coordinates (x, y), normalised: the affine map plus the elastic field.

        Built as (B, 2, H*W) and returned as a permuted view: grid_sample reads it as fast as a contiguous
        grid, and ``affine_grid`` itself (a batched matmul with an inner size of 3) cost ~1.7 ms per batch
        of 128 on one CPU core against ~0.05 ms for this one (B, 2, 3) @ (3, H*W) product.
        """
        kind, c = self.config.kind, self._constants_for(size)
        if kind in ("affine", "both"):
            grid = self._random_theta(batch, size) @ c["base"]  # (B, 2, H*W)
        else:
            grid = c["base"][:2].expand(batch, 2, -1)
        if kind in ("elastic", "both"):
            grid = grid + self._random_field(batch, c).flatten(2)
        height, width = size
        return grid.view(batch, 2, height, width).permute(0, 2, 3, 1)

    def _constants_for(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        if size not in self._constants:
            height, width = size
            sigma, alpha = self.config.elastic_sigma, self.config.elastic_alpha
            self._constants[size] = {
                "base": _base_grid(size, self.device),
                # alpha and the pixel -> normalised factor folded into the bases: (H, k) for y, (W, k) for x
                "rows": smooth_basis(height, sigma).to(self.device),
                "cols_t": smooth_basis(width, sigma).T.contiguous().to(self.device),
                "scale": (alpha * _pixels_to_normalised(size, self.device)).view(1, 2, 1, 1),
            }
        return self._constants[size]

    def _uniform(self, *shape: int) -> torch.Tensor:
        """Uniform in [-1, 1], drawn from this distorter's generator on its device (no host sync)."""
        return torch.rand(*shape, generator=self.generator, device=self.device).mul_(2).sub_(1)

    def _random_theta(self, batch: int, size: tuple[int, int]) -> torch.Tensor:
        c = self.config
        u = self._uniform(batch, 5)  # (B, 5): angle, zoom, shear, shift x, shift y
        return affine_theta(
            c.rotate * u[:, 0], 1 + c.scale * u[:, 1], c.shear * u[:, 2], c.translate * u[:, 3:5], size
        )

    def _random_field(self, batch: int, c: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2, H, W) elastic displacement (x, y) in normalised units: alpha * Simard's field."""
        rows, cols_t = c["rows"], c["cols_t"]
        coefficients = self._uniform(batch, 2, rows.shape[1], cols_t.shape[0]) * c["scale"]  # (B, 2, k, k)
        return rows @ coefficients @ cols_t

    # ---- an epoch of batches, and the resume state ------------------------------------------------------
    def wrap(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in batches:
            yield self(x), y

    def state(self) -> dict[str, torch.Tensor]:
        """The generator's state under :data:`STATE_KEY`, a CPU uint8 tensor, for the resume checkpoint."""
        return {STATE_KEY: self.generator.get_state()}

    def restore(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.cpu())


def build_distorter(
    config: AugmentConfig, preprocessor: Preprocessor, device: torch.device | str, seed: int
) -> Distorter | None:
    """A :class:`Distorter`, or None for ``kind="none"`` (training batches are then used as they are)."""
    if config.kind == "none":
        return None
    return Distorter(config, preprocessor, device, seed)


def _pixel_statistics(pre: Preprocessor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) with preprocessed = (pixels - mean) / std, for each preprocessing mode.

    Shapes () for global statistics or (1, 1, H, W) per pixel, float32 on ``device``.
    """
    if pre.mode == "standardize":
        mean, std = pre.mean, pre.std
    elif pre.mode == "center":
        mean, std = pre.mean, torch.ones_like(pre.std)
    elif pre.mode == "scale":
        mean, std = torch.tensor(0.0), torch.tensor(255.0)
    else:  # raw
        mean, std = torch.tensor(0.0), torch.tensor(1.0)
    shape = (1, 1, *mean.shape) if mean.ndim == 2 else ()
    return (
        mean.reshape(shape).to(device=device, dtype=torch.float32),
        std.reshape(shape).to(device=device, dtype=torch.float32),
    )
