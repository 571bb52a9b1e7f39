"""Ciresan et al.'s width normalisation: every digit stretched or squeezed to one ink width before the network.

MNIST's digits are scaled to fit a 20 x 20 box and keep their aspect ratio, so a 1 is ~7 pixels wide (as this
module measures ink) and a 0 ~16. Ciresan, Meier and Schmidhuber (2012) trained the columns of their committee
on copies of MNIST whose digits were re-scaled horizontally to one width each (10, 12, ..., 20 pixels) or left
as written, so that the columns make different mistakes for the average to cancel. (For mnistlab's committee,
on validation, it did not help enough to adopt: BENCHMARKS.md, "Input variants".)

:class:`WidthNormalized` does that inside the model, so validation, test, prediction, serving and the ONNX
export all see the same input. Per image (B, 1, 28, 28):

1. the background is the image's darkest value (the pixel transform is one increasing affine map for the
   whole image, so raw 0 stays the darkest); ink is what rises above it;
2. the ink's columns are those whose brightest pixel reaches INK_FRACTION of the image's brightest;
3. the image is resampled horizontally by ``width / (right - left + 1)`` about the ink's centre column, which
   lands on the image's centre column; rows are untouched.

A digit squeezed to half its width would skip every other column with plain bilinear sampling, so each output
column is the mean of SUPERSAMPLE bilinear samples across its width (a box filter). An image without ink is
returned unchanged. Everything is tensor arithmetic (no data-dependent Python), so it traces to ONNX. The
grid is built and sampled in float32 at least (a bfloat16 grid would misplace samples by ~1/8 pixel).

Training uses Ciresan's order: the width first, then the distortions. Normalising after them would undo their
horizontal shift (the ink is re-centred) and most of their horizontal zoom and shear, and a width member would
train on milder distortions than a member as written (on validation it also made more errors: BENCHMARKS.md,
"Input variants"). So the trainer normalises the training split once, before any batch is drawn
(:func:`normalize_width_split`), and :class:`WidthNormalized` in training mode (``model.train()``) passes its
input straight to the network; in eval mode, as every scoring, prediction and export path uses it, it
normalises. The clean last epochs thus see exactly what evaluation sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INK_FRACTION = 0.1  # of the image's brightest ink: fainter columns (anti-aliased fringes, noise) are not ink
SUPERSAMPLE = 4  # bilinear samples per output column, averaged: squeezing by up to 4x skips no column
SPLIT_CHUNK = 4096  # images normalised at a time by normalize_width_split: its grid is ~3.7 MB per 100 images


def ink_columns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right): the first and last ink column of each image in x (B, 1, H, W), as float (B,) pixel
    indices; an image without ink gets left = 0, right = W - 1 (the whole width: no change)."""
    return _ink_box(x - x.amin(dim=(1, 2, 3), keepdim=True))


def _ink_box(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ink_columns` of ``ink`` (B, 1, H, W), images whose background is already 0."""
    column = ink.amax(dim=2).squeeze(1)  # (B, W): each column's brightest ink
    peak = column.amax(dim=1, keepdim=True)  # (B, 1)
    is_ink = (column >= INK_FRACTION * peak) & (peak > 0)  # (B, W)
    index = torch.arange(ink.shape[-1], device=ink.device, dtype=ink.dtype).expand_as(column)
    left = torch.where(is_ink, index, torch.full_like(index, ink.shape[-1])).amin(dim=1)
    right = torch.where(is_ink, index, torch.full_like(index, -1)).amax(dim=1)
    empty = right < left
    return torch.where(empty, 0.0, left), torch.where(empty, ink.shape[-1] - 1.0, right)


def normalize_width(x: torch.Tensor, width: float) -> torch.Tensor:
    """x (B, 1, H, W) with each image's ink re-scaled horizontally to ``width`` pixels, centred."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return normalize_width(x.float(), width).to(x.dtype)
    _, _, h, w = x.shape
    background = x.amin(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    ink = x - background  # (B, 1, H, W), background 0: what is resampled (grid_sample pads with 0)
    left, right = _ink_box(ink)
    magnify = width / (right - left + 1)  # (B,): output pixels per input pixel
    centre = (left + right) / 2  # (B,) input column that lands on the output's centre, (W - 1) / 2
    # Output sub-column positions in pixels, SUPERSAMPLE per column, centred in each: (S*W,)
    sub = (torch.arange(w * SUPERSAMPLE, device=x.device, dtype=x.dtype) + 0.5) / SUPERSAMPLE - 0.5
    source = centre[:, None] + (sub[None, :] - (w - 1) / 2) / magnify[:, None]  # (B, S*W) input columns
    gx = (2 * source + 1) / w - 1  # grid_sample's [-1, 1] coordinates (align_corners=False)
    gy = (2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1  # (H,)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[None, :, None]), dim=-1)  # (B, H, S*W, 2)
    sampled = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(sampled, kernel_size=(1, SUPERSAMPLE)) + background  # (B, 1, H, W)


def normalize_width_split(images: torch.Tensor, width: float) -> torch.Tensor:
    """:func:`normalize_width` of a whole split (N, 1, H, W), SPLIT_CHUNK images at a time (bounded memory)."""
    return torch.cat([normalize_width(chunk, width) for chunk in images.split(SPLIT_CHUNK)])


class WidthNormalized(nn.Module):
    """``net`` applied to width-normalised input (module docstring); ``width`` in pixels.

    In eval mode it normalises its input; in training mode the input is a training batch that the trainer
    normalised before distorting it (Ciresan's order), so it goes to ``net`` as it is.
    """

    def __init__(self, net: nn.Module, width: int) -> None:
        super().__init__()
        self.net, self.width = net, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x if self.training else normalize_width(x, float(self.width)))

    def extra_repr(self) -> str:
        return f"width={self.width}"
