"""Matplotlib figures for reports and lab experiments, drawn with the non-interactive Agg backend.

Every function returns a ``Figure``; :func:`save_figure` writes it as a PNG (atomically) and leaves it open.
No figure needs closing: they are made without pyplot, so nothing global holds them and they are freed like
any object. The Agg backend is selected on the figure itself (``FigureCanvasAgg``), so importing this module
changes no global matplotlib state and never opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnistlab.fileio import atomic_save_figure, make_dirs

DPI = 80  # small PNGs (docs keep each under 150 KB) that still read well in a browser


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.4, 4.0)) -> tuple[Figure, list]:
    """A figure with an Agg canvas and a flat list of axes (row-major)."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (creating its folder) and return the path."""
    path = Path(path)
    make_dirs(path.parent)
    return atomic_save_figure(path, fig, DPI)


def step_positions(steps: Sequence[dict]) -> tuple[list[float], list[float]]:
    """(x, loss) of every training step from steps.jsonl records: x in epochs, so that the k-th of n steps of
    epoch e sits at e - 1 + k/n (the fraction of the epoch's images seen once it is done). A run resumed with
    a different batch size keeps each epoch's own n."""
    x, y = [], []
    for record in steps:
        losses = record["loss"]
        n = len(losses)
        x += [record["epoch"] - 1 + (k + 1) / n for k in range(n)]
        y += losses
    return x, y


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and the ``window - 1`` before it (fewer at the start): a trailing running mean."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def learning_curves(history: Sequence[dict], steps: Sequence[dict] = ()) -> Figure:
    """Loss (left) and accuracy in % (right) against epochs, from metrics.jsonl (and steps.jsonl) records.

    With ``steps``, the loss panel shows every training step (faint) and their running mean, so that even a
    one-epoch run has a curve; the epoch-end figures (validation, and train without ``steps``) are markers at
    x = 1, 2, ... The x axis always starts at 0: the run's start.
    """
    fig, (ax_loss, ax_acc) = new_figure(2)
    epochs = [h["epoch"] for h in history]
    if steps:
        x, y = step_positions(steps)
        ax_loss.plot(x, y, "-", color="C0", alpha=0.25, linewidth=0.8, label="train, each step")
        window = max(1, len(y) // 25)  # smooths the batch-to-batch noise, keeps the shape
        ax_loss.plot(x, moving_average(y, window), "-", color="C0", label=f"train, mean of {window} steps")
        ax_loss.set_yscale("log")
    for key, label, style, color in (("train", "train", "o-", "C0"), ("val", "validation", "s--", "C1")):
        if not history or not all(f"{key}_loss" in h for h in history):
            continue
        if not (key == "train" and steps):
            loss = [h[f"{key}_loss"] for h in history]
            ax_loss.plot(epochs, loss, style, color=color, label=f"{label}, end of epoch")
        accuracy = [100 * h[f"{key}_accuracy"] for h in history]
        ax_acc.plot(epochs, accuracy, style, color=color, label=label)
    last = max([*epochs, *(s["epoch"] for s in steps), 1])
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (nats/image)", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy (end of each epoch)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlim(0, last * 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_heatmap(matrix: Sequence[Sequence[int]], title: str = "Confusion matrix") -> Figure:
    """Counts per (true, predicted) pair; colour is log-scaled so that the rare mistakes stay visible."""
    from matplotlib.colors import LogNorm

    cm = np.asarray(matrix)
    fig, (ax,) = new_figure(size=(6.4, 5.6))
    image = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm(vmin=1, vmax=cm.max() + 1))
    n = cm.shape[0]
    for i in range(n):
        for j in range(n):
            color = "white" if cm[i, j] > cm.max() / 4 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xlabel="predicted label",
        ylabel="true label",
        title=f"{title} ({cm.sum():,} images)",
    )
    fig.colorbar(image, ax=ax, label="images (count + 1, log scale)")
    return fig


def image_gallery(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 8) -> Figure:
    """A grid of 28x28 images (uint8, 0-255) with a caption under each."""
    n = max(len(images), 1)
    rows = -(-n // columns)
    fig = Figure(figsize=(1.3 * columns, 1.55 * rows + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, captions, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=8)
    return fig
