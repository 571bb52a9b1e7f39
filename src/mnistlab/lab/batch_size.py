"""`mnistlab lab batch-size`: updates per epoch, time per epoch and accuracy across batch sizes.

The lecture's claims: smaller batches make more updates per epoch; a good batch size converges fast and
stably; too large a batch performs worse after the same number of epochs. Batch 1 runs on a subset (a full
epoch of 55,000 single-image steps takes minutes on 2 cores); its seconds per epoch are extrapolated to the
full training split and marked as such. "Full batch" is one step per epoch: plain gradient descent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mnistlab.data import TensorSplit
from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import (
    LabOptions,
    load_splits,
    open_out_dir,
    smoke_settings,
    test_accuracy,
    train_epochs,
    write_config,
)
from mnistlab.models import build_model
from mnistlab.recipes import recipe
from mnistlab.training.trainer import Splits

FULL = 0  # stands for "the whole training split" in the batch-size lists


def updates_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimiser steps in one pass over n_images when the last, smaller batch is kept: ceil(N / B)."""
    return math.ceil(n_images / batch_size)


def settings(quick: bool, lr_scaling: str) -> dict:
    return {
        "model": "mlp",
        "hidden": [128],
        "optimizer": "sgd",
        "base_lr": 0.05,  # at the reference batch size; plain SGD (no momentum), constant schedule
        "reference_batch": 128,  # linear scaling: lr = base_lr * B / 128
        "momentum": 0.0,
        "batch_sizes": [1, 8, 32, 100, 256, 1024, FULL] if quick else [1, 8, 32, 100, 256, 1024, 4096, FULL],
        "batch1_subset": 2000 if quick else 5000,  # images used for batch size 1
        "epochs": 2 if quick else 3,
        "train_subset": 10_000 if quick else None,  # None = all 55,000 training images
        "target_val_accuracy": 0.85 if quick else 0.95,
        "scalings": [lr_scaling] if quick else ["none", "linear"],
    }


def _config(s: dict, batch: int, lr: float, seed: int):
    cfg = recipe("mlp")
    cfg.model.hidden, cfg.model.dropout = tuple(s["hidden"]), 0.0
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum = "sgd", lr, s["momentum"]
    cfg.optim.nesterov, cfg.optim.weight_decay, cfg.optim.schedule = False, 0.0, "constant"
    cfg.batch_size, cfg.seed = batch, seed
    cfg.data.train_subset = s["train_subset"]
    return cfg


def run(options: LabOptions) -> Report:
    out = open_out_dir("batch-size", options)
    s = smoke_settings(settings(options.quick, options.lr_scaling))
    write_config(out, "batch-size", options, s)
    splits = load_splits(_config(s, 1, s["base_lr"], options.seed))  # preprocessing: standardise
    rows, curves = [], []
    for scaling in s["scalings"]:
        for b in s["batch_sizes"]:
            row, curve = _train_one(s, splits, scaling, b, options.seed)
            rows.append(row)
            curves.append(curve)
    write_csv(out / "results.csv", rows)
    write_json(out / "curves.json", curves)
    report = _report(out, rows, curves, s, len(splits.train), options.quick)
    report.write(out)
    return report


def _train_one(s: dict, splits: Splits, scaling: str, b: int, seed: int) -> tuple[dict, dict]:
    """Train the MLP at batch size ``b`` (FULL: the whole split); its results row and convergence curve."""
    n_full = len(splits.train)
    batch = n_full if b == FULL else b
    train = splits.train
    if batch == 1:
        train = TensorSplit(train.images[: s["batch1_subset"]], train.labels[: s["batch1_subset"]])
    lr = s["base_lr"] * (batch / s["reference_batch"] if scaling == "linear" else 1.0)
    cfg = _config(s, batch, lr, seed)
    torch.manual_seed(seed)
    model = build_model("mlp", hidden=cfg.model.hidden, dropout=0.0)
    results = train_epochs(model, train, splits.val, cfg, epochs=s["epochs"])
    diverged = not math.isfinite(results[-1].train_loss)
    seconds = [r.seconds for r in results]
    reached = next((i for i, r in enumerate(results) if r.val_accuracy >= s["target_val_accuracy"]), None)
    per_epoch = float(np.median(seconds)) * n_full / len(train)  # extrapolated when on a subset
    row = {
        "lr_scaling": scaling,
        "batch_size": batch,
        "lr": lr,
        "train_images": len(train),
        "updates_per_epoch": updates_per_epoch(len(train), batch),
        "seconds_per_epoch": round(per_epoch, 3),
        "seconds_extrapolated": len(train) != n_full,
        "seconds_to_target": None if reached is None else round(sum(seconds[: reached + 1]), 3),
        "final_val_accuracy": results[-1].val_accuracy,
        "test_accuracy": None if diverged else test_accuracy(model, splits.test),
        "diverged": diverged,
    }
    curve = {
        "lr_scaling": scaling,
        "batch_size": batch,
        "cumulative_seconds": np.cumsum(seconds).tolist(),
        "val_accuracy": [r.val_accuracy for r in results],
    }
    return row, curve


def _report(out, rows: list[dict], curves: list[dict], s: dict, n_full: int, quick: bool) -> Report:
    report = Report("Batch size: updates, time and accuracy")
    report.figure(
        _main_figure(out, rows, n_full),
        "Seconds per epoch and final validation accuracy against batch size (log scale).",
    )
    report.figure(
        _convergence_figure(out, curves, s),
        "Validation accuracy against training time, one line per batch size.",
    )
    report.text(
        f"The same MLP (one hidden layer of {s['hidden'][0]}) trained for {s['epochs']} epochs with plain SGD "
        f"(momentum {s['momentum']}) at each batch size B, on {n_full:,} images. One epoch makes ceil(N / B) "
        f"updates. Learning rate {s['base_lr']}"
        + (" scaled linearly with B / 128 where marked 'linear'." if "linear" in s["scalings"] else ".")
        + f" Batch 1 trains on {s['batch1_subset']:,} images; its time per epoch is extrapolated to {n_full:,}."
        + (" Quick mode: a training subset and few epochs." if quick else "")
    )
    report.text(
        "Small batches make many cheap updates but cannot use the CPU's parallelism, so an epoch takes "
        "longest; very large batches are fast per epoch but make so few updates that accuracy after a fixed "
        "number of epochs drops. Accuracy is measured on the validation split; test accuracy is scored once "
        "per trained model."
    )
    report.table(
        [
            "lr scaling",
            "batch",
            "lr",
            "updates/epoch",
            "s/epoch",
            f"s to {100 * s['target_val_accuracy']:.0f} % val",
            "val acc. (%)",
            "test acc. (%)",
        ],
        [_table_row(r, n_full) for r in rows],
    )
    return report


def _table_row(r: dict, n_full: int) -> list[str]:
    return [
        r["lr_scaling"],
        f"{r['batch_size']:,}" + (" (full)" if r["batch_size"] == n_full else ""),
        f"{r['lr']:.4g}",
        f"{r['updates_per_epoch']:,}",
        f"{r['seconds_per_epoch']:.2f}" + (" (extrap.)" if r["seconds_extrapolated"] else ""),
        "not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.1f}",
        "diverged" if r["diverged"] else f"{100 * r['final_val_accuracy']:.2f}",
        "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}",
    ]


def _main_figure(out, rows: list[dict], n_full: int):
    fig, (ax_t, ax_a) = plots.new_figure(2)
    for scaling in dict.fromkeys(r["lr_scaling"] for r in rows):
        sub = [r for r in rows if r["lr_scaling"] == scaling]
        b = [r["batch_size"] for r in sub]
        name = f"lr scaling: {scaling}"
        if scaling == rows[0]["lr_scaling"]:  # time per epoch does not depend on the lr: draw it once
            ax_t.plot(b, [r["seconds_per_epoch"] for r in sub], "o-", label="seconds per epoch")
            extra = [r for r in sub if r["seconds_extrapolated"]]
            ax_t.plot(
                [r["batch_size"] for r in extra],
                [r["seconds_per_epoch"] for r in extra],
                "o",
                mfc="white",
                ms=10,
                label="extrapolated from a subset",
            )
        acc = [np.nan if r["diverged"] else 100 * r["final_val_accuracy"] for r in sub]
        (line,) = ax_a.plot(b, acc, "o-", label=name)
        subset = [(bb, a) for bb, a, r in zip(b, acc, sub, strict=True) if r["seconds_extrapolated"]]
        if subset:  # batch 1 saw only a subset of the images: not comparable, so drawn hollow
            ax_a.plot(
                *zip(*subset, strict=True),
                "o",
                mfc="white",
                ms=10,
                color=line.get_color(),
                label=f"trained on {sub[0]['train_images']:,} images only",
            )
    ax_t.set(
        xscale="log",
        yscale="log",
        xlabel="batch size (images, log scale)",
        ylabel="seconds per epoch (log scale)",
        title=f"Time per epoch ({n_full:,} images)",
    )
    ax_a.set(
        xscale="log",
        xlabel="batch size (images, log scale)",
        ylabel="final validation accuracy (%)",
        title="Accuracy after a fixed number of epochs",
    )
    for ax in (ax_t, ax_a):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return plots.save_figure(fig, out / "batch_size.png")


def _convergence_figure(out, curves: list[dict], s: dict):
    scalings = list(dict.fromkeys(c["lr_scaling"] for c in curves))
    fig, axes = plots.new_figure(len(scalings))
    for ax, scaling in zip(axes, scalings, strict=True):
        for c in (c for c in curves if c["lr_scaling"] == scaling):
            ax.plot(
                c["cumulative_seconds"],
                100 * np.array(c["val_accuracy"]),
                "o-",
                label=f"B = {c['batch_size']:,}",
            )
        ax.axhline(100 * s["target_val_accuracy"], color="k", ls=":", label="target")
        ax.set(
            xscale="log",
            xlabel="training time (s, log scale)",
            ylabel="validation accuracy (%)",
            title=f"Convergence (lr scaling: {scaling})",
            ylim=(0, 100),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return plots.save_figure(fig, out / "convergence.png")
