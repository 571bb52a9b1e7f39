"""The distortions, seen: one training digit under 16 random draws of each kind (affine, elastic, both); and
the input variants: training digits re-scaled to each width of Ciresan et al. 2012 (--member-input-widths).

The draws come from the same :class:`mnistlab.data.augment.Distorter` the training loop uses, applied to
the digit after preprocessing (as in training), and are shown in pixel units again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mnistlab.config import AugmentConfig
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.data.augment import Distorter
from mnistlab.evaluation.plots import new_figure, save_figure
from mnistlab.evaluation.report import Report
from mnistlab.lab.common import LabOptions, open_out_dir, write_config
from mnistlab.models.width import normalize_width
from mnistlab.recipes import committee_recipe

KINDS = ("affine", "elastic", "both")
DRAWS = 16
WIDTHS = (10, 12, 14, 16, 18, 20)  # pixels: Ciresan et al. 2012's width normalisations
WIDTH_DIGITS = 12  # training images shown at each width


def run(options: LabOptions) -> Report:
    """``mnistlab lab augment``: the figure for the committee recipe's magnitudes (what its members train on)."""
    out = open_out_dir("augment", options)
    config = committee_recipe().augment
    write_config(out, "augment", options, {"augment": dataclasses.asdict(config), "image_index": 0})
    path = distortion_figure(out / "distortions.png", config, index=0, seed=options.seed)
    report = Report("Distortions of the training digits")
    report.figure(path, "The first training digit and 16 random draws of each distortion kind.")
    report.text(
        f"The committee recipe's magnitudes: {_describe(config)}. Affine draws a rotation, a zoom, a "
        "horizontal shear and a shift per image, uniformly within them. Elastic (Simard et al. 2003) moves "
        "every pixel by a random field, uniform noise smoothed by a Gaussian of std sigma and scaled by alpha. "
        "`both` adds the two displacements into one sampling grid. Training applies them to every training batch, with a fresh draw each time; "
        "validation and test images are never distorted."
    )
    widths = width_figure(out / "widths.png", count=WIDTH_DIGITS)
    report.figure(widths, f"The first {WIDTH_DIGITS} training digits as written and at each width, pixels.")
    report.text(
        "Ciresan et al. 2012 trained the columns of their committee on digits re-scaled horizontally to one "
        "ink width each; `--member-input-widths` gives each committee member one of these views. The model "
        "applies it to every image it scores; in training the trainer normalises the digits first and the "
        "distortions follow, as Ciresan did."
    )
    report.write(out)
    return report


def distortion_draws(image: torch.Tensor, config: AugmentConfig, kind: str, seed: int = 0) -> torch.Tensor:
    """(DRAWS, 28, 28) pixels 0-255: ``image`` (28, 28) uint8 distorted DRAWS times by ``kind``."""
    pre = Preprocessor.fit(image[None])  # any statistics will do: the distorter undoes them exactly
    distorter = Distorter(dataclasses.replace(config, kind=kind), pre, "cpu", seed)
    batch = pre(image[None].expand(DRAWS, -1, -1))  # (16, 1, 28, 28), preprocessed as in training
    return (distorter(batch) * distorter.std + distorter.mean)[:, 0].clamp(0, 255)


def distortion_figure(
    out: str | Path,
    config: AugmentConfig | None = None,
    *,
    index: int = 0,
    seed: int = 0,
    dataset: str = "mnist",
    data_dir: str | None = None,
) -> Path:
    """Write a PNG: training image ``index`` and 16 draws of each distortion kind (one row each)."""
    config = config or AugmentConfig()
    arrays = load_dataset(dataset, data_dir, progress=False)
    image = torch.from_numpy(arrays.train_images[index])
    fig, axes = new_figure(ncols=DRAWS + 1, nrows=len(KINDS), size=(0.95, 1.0))
    for row, kind in enumerate(KINDS):
        panels = [image.float(), *distortion_draws(image, config, kind, seed + row)]
        for col, picture in enumerate(panels):
            ax = axes[row * (DRAWS + 1) + col]
            ax.imshow(picture.numpy(), cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(kind, fontsize=9)
                ax.set_title("original", fontsize=7)
    fig.suptitle(_describe(config), fontsize=9)
    return save_figure(fig, out)


def _describe(c: AugmentConfig) -> str:
    return (
        f"affine: rotate ±{c.rotate:g}°, zoom ±{100 * c.scale:g} %, shear ±{c.shear:g}°, shift ±{c.translate:g} px;"
        f"  elastic: alpha {c.elastic_alpha:g} px, sigma {c.elastic_sigma:g} px"
    )


def width_figure(
    out: str | Path, *, count: int = WIDTH_DIGITS, dataset: str = "mnist", data_dir: str | None = None
) -> Path:
    """Write a PNG: the first ``count`` training images as written (top row) and at each of WIDTHS."""
    arrays = load_dataset(dataset, data_dir, progress=False)
    images = torch.from_numpy(arrays.train_images[:count]).float()[:, None]  # (count, 1, 28, 28), 0-255
    rows = [("as written", images)] + [(f"{w} px", normalize_width(images, float(w))) for w in WIDTHS]
    fig, axes = new_figure(ncols=count, nrows=len(rows), size=(0.95, 1.0))
    for r, (name, pictures) in enumerate(rows):
        for col in range(count):
            ax = axes[r * count + col]
            ax.imshow(pictures[col, 0].numpy(), cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(
        "Width normalisation (Ciresan et al. 2012): each digit's ink re-scaled to one width", fontsize=9
    )
    return save_figure(fig, out)
