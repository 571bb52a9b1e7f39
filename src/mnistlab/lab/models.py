"""`mnistlab lab models`: MLP, LeNet-5, wide LeNet and the fast CNN side by side.

Each model trains with its own recipe (:func:`mnistlab.recipe`) through :func:`train_seeds`, so every run is
an ordinary run folder under ``runs/<model>/seed-<k>``; test accuracy is scored once per run, at its end.
"""

from __future__ import annotations

import numpy as np

from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import LabOptions, open_out_dir, smoke_settings, write_config
from mnistlab.lab.repeat import format_mean_std, train_seeds
from mnistlab.models import count_parameters, flops_per_image, model_from_config
from mnistlab.recipes import recipe
from mnistlab.training.progress import Reporter

MODELS = [("mlp", "MLP"), ("lenet5", "LeNet-5"), ("lenet-wide", "wide LeNet"), ("cnn", "fast CNN")]


def settings(quick: bool) -> dict:
    return {
        "models": [m for m, _ in MODELS],
        "seeds": 2 if quick else 3,
        "train_subset": 6000 if quick else None,  # None = all 55,000 training images
        "max_epochs": 1 if quick else 3,  # min(recipe epochs, this); the schedule spans the epochs run
    }


def run(options: LabOptions) -> Report:
    out = open_out_dir("models", options)
    s = smoke_settings(settings(options.quick))
    rows, configs = [], {}
    for name, label in MODELS:
        cfg = recipe(name)
        cfg.epochs = min(cfg.epochs, s["max_epochs"])
        cfg.data.train_subset = s["train_subset"]
        cfg.seed, cfg.quiet, cfg.progress, cfg.threads = options.seed, True, False, options.threads
        configs[name] = cfg.to_dict()
        model = model_from_config(cfg.model)
        summary = train_seeds(cfg, s["seeds"], out=out / "runs" / name, reporter=Reporter(quiet=True))
        rows.append(
            {
                "model": name,
                "label": label,
                "parameters": count_parameters(model),
                "flops_per_image": flops_per_image(model),
                "epochs": cfg.epochs,
                "seconds_per_epoch_mean": summary["seconds_per_epoch"]["mean"],
                "seconds_per_epoch_std": summary["seconds_per_epoch"]["std"],
                "test_accuracy_mean": summary["test_accuracy"]["mean"],
                "test_accuracy_std": summary["test_accuracy"]["std"],
                "seeds": len(summary["seeds"]),
                "summary": summary,
            }
        )
    write_config(out, "models", options, s | {"recipes": configs})
    write_csv(out / "results.csv", [{k: v for k, v in r.items() if k != "summary"} for r in rows])
    write_json(out / "results.json", rows)
    report = _report(out, rows, s, options)
    report.write(out)
    return report


def _report(out, rows: list[dict], s: dict, options: LabOptions) -> Report:
    n = s["train_subset"] or 55_000
    report = Report("Four models compared")
    report.figure(
        _figure(out, rows),
        "Test accuracy (mean ± std over seeds) against compute per image, and time per epoch.",
    )
    report.text(
        f"Each model trained with its own recipe for {s['max_epochs']} epoch(s) at most, on {n:,} images, "
        f"{s['seeds']} seeds each (seeds {options.seed}–{options.seed + s['seeds'] - 1}). "
        + (
            "QUICK MODE: a training subset, one epoch and two seeds. These numbers show the ranking, "
            "not what the models reach with full training."
            if options.quick
            else "Accuracy is scored once per run on the 10,000 test images, after the epoch validation chose."
        )
    )
    report.text(
        "Convolutions share weights across the image: the CNNs need far fewer parameters than the MLP for "
        "higher accuracy, but they do more arithmetic per image, so an epoch takes longer on a CPU."
    )
    report.table(
        ["model", "parameters", "FLOPs/image", "s/epoch", "test acc. (%)", "seeds"],
        [
            [
                r["label"],
                f"{r['parameters']:,}",
                f"{r['flops_per_image'] / 1e6:.2f} M",
                f"{r['seconds_per_epoch_mean']:.1f} ± {r['seconds_per_epoch_std']:.1f}",
                format_mean_std(r["summary"]["test_accuracy"], 100),
                r["seeds"],
            ]
            for r in rows
        ],
    )
    return report


def _figure(out, rows: list[dict]):
    fig, (ax_a, ax_t) = plots.new_figure(2)
    for r in rows:
        ax_a.errorbar(
            r["flops_per_image"],
            100 * r["test_accuracy_mean"],
            yerr=100 * r["test_accuracy_std"],
            fmt="o",
            capsize=4,
            ms=8,
            label=f"{r['label']} ({r['parameters'] / 1e3:.0f} k params)",
        )
    ax_a.set(
        xscale="log",
        xlabel="forward FLOPs per image (log scale)",
        ylabel="test accuracy (%)",
        title="Accuracy vs compute (mean ± std over seeds)",
    )
    x = np.arange(len(rows))
    ax_t.bar(
        x,
        [r["seconds_per_epoch_mean"] for r in rows],
        yerr=[r["seconds_per_epoch_std"] for r in rows],
        capsize=4,
        color=[f"C{i}" for i in range(len(rows))],
        label="seconds per epoch",
    )
    ax_t.set(
        xticks=x,
        xticklabels=[r["label"] for r in rows],
        ylabel="seconds per epoch (training only)",
        title="Training time per epoch",
    )
    for ax in (ax_a, ax_t):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plots.save_figure(fig, out / "models.png")
