"""`mnistlab lab overfitting`: a large unregularised MLP on a small training subset, and early stopping.

Training runs to the end so that both curves are visible; an :class:`EarlyStopping` tracker watches the
validation loss alongside and records where it *would* have stopped and which epoch's weights it keeps.
Both models (the kept weights and the final weights) are scored on the test set once, after training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import (
    EpochResult,
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
from mnistlab.training import EarlyStopping


def settings(quick: bool) -> dict:
    return {
        "model": "mlp",
        "hidden": [1024, 1024],
        "dropout": 0.0,
        "weight_decay": 0.0,  # no regularisation of any kind: the point is to overfit
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": 64,
        "train_subset": 1000 if quick else 2000,
        "val_size": 5000,
        "epochs": 30 if quick else 80,
        # Early-stopping criteria, monitor -> min_delta. val_accuracy (the project's default monitor) is the
        # one marked as "early stopping"; val_loss bottoms out much earlier here (the model grows
        # over-confident on the images it gets wrong) and is shown for comparison. 0.002 = 10 of 5,000
        # validation images, about one standard error at 93 %: smaller gains are noise and would keep a flat
        # curve "improving" for ever.
        "criteria": {"val_accuracy": 0.002, "val_loss": 0.0},
        "patience": 5 if quick else 10,  # epochs without an improvement before stopping
    }


def run(options: LabOptions) -> Report:
    out = open_out_dir("overfitting", options)
    s = smoke_settings(settings(options.quick))
    write_config(out, "overfitting", options, s)
    cfg = recipe("mlp")
    cfg.model.hidden, cfg.model.dropout = tuple(s["hidden"]), s["dropout"]
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay = s["optimizer"], s["lr"], s["weight_decay"]
    cfg.optim.schedule, cfg.batch_size, cfg.seed = "constant", s["batch_size"], options.seed
    cfg.data.train_subset, cfg.data.val_size = s["train_subset"], s["val_size"]
    splits = load_splits(cfg)
    torch.manual_seed(options.seed)
    model = build_model("mlp", hidden=cfg.model.hidden, dropout=s["dropout"])
    watch, chosen = _watchers(model, s)
    results = train_epochs(model, splits.train, splits.val, cfg, epochs=s["epochs"], on_epoch=watch)
    # Each set of weights is scored on the test set once, after all training is done.
    final_test = test_accuracy(model, splits.test)  # without early stopping: the last epoch's weights
    criteria = {}
    for monitor, pick in chosen.items():
        model.load_state_dict(pick["state"])
        criteria[monitor] = {
            "best_epoch": pick["best_epoch"],
            "stop_epoch": pick["stop_epoch"],
            "min_delta": s["criteria"][monitor],
            "val_accuracy": results[pick["best_epoch"] - 1].val_accuracy,
            "test_accuracy": test_accuracy(model, splits.test),
        }
    main = criteria["val_accuracy"]
    summary = {
        "best_epoch": main["best_epoch"],
        "stop_epoch": main["stop_epoch"],
        "epochs_run": len(results),
        "test_accuracy_with_early_stopping": main["test_accuracy"],
        "test_accuracy_without_early_stopping": final_test,
        "val_accuracy_at_best_epoch": main["val_accuracy"],
        "val_accuracy_at_last_epoch": results[-1].val_accuracy,
        "criteria": criteria,
    }
    write_csv(out / "history.csv", [r.record() for r in results])
    write_json(out / "summary.json", summary)
    report = _report(out, results, summary, s, options.quick)
    report.write(out)
    return report


def _watchers(model: torch.nn.Module, s: dict) -> tuple[Callable[[EpochResult], None], dict[str, dict]]:
    """An epoch callback feeding one EarlyStopping tracker per criterion, and what each one chose.

    Each tracker is frozen the first time it says stop (or at the last epoch): ``chosen[monitor]`` then holds
    its stop epoch (None if it never stopped), best epoch and a copy of the best weights.
    """
    stoppers = {
        m: EarlyStopping(mode="max" if m == "val_accuracy" else "min", patience=s["patience"], min_delta=d)
        for m, d in s["criteria"].items()
    }
    chosen: dict[str, dict] = {}

    def watch(result: EpochResult) -> None:
        for monitor, stopper in stoppers.items():
            if monitor in chosen:
                continue
            stopper.update(getattr(result, monitor), result.epoch, model)
            if stopper.should_stop or result.epoch == s["epochs"]:
                chosen[monitor] = {
                    "stop_epoch": result.epoch if stopper.should_stop else None,
                    "best_epoch": stopper.best_epoch,
                    "state": copy.deepcopy(stopper.best_state),
                }

    return watch, chosen


def _report(out, results: list[EpochResult], summary: dict, s: dict, quick: bool) -> Report:
    criteria = summary["criteria"]
    report = Report("Overfitting and early stopping")
    report.figure(
        _figure(out, results, summary, s),
        "Error (left) and loss (right) per epoch on the training subset and on validation.",
    )
    report.text(
        f"An MLP with two hidden layers of {s['hidden'][0]} units, no dropout and no weight decay, trained with "
        f"Adam (lr {s['lr']}) on only {s['train_subset']:,} images for {s['epochs']} epochs"
        + (" (quick mode)." if quick else ".")
        + " The training error falls to zero: the network memorises the subset, while the validation error "
        "levels off far above it. The validation loss bottoms out early and then rises: the model grows "
        "over-confident on the images it gets wrong."
    )
    stop = summary["stop_epoch"]
    report.text(
        f"Early stopping on the validation accuracy (patience {s['patience']} epochs; a gain under "
        f"{100 * s['criteria']['val_accuracy']:.1f} points, about the noise of {s['val_size']:,} validation "
        f"images, does not count) keeps epoch {summary['best_epoch']}"
        + (f" and stops at epoch {stop}." if stop else "; it never triggered.")
        + f" On the validation loss it would keep epoch {criteria['val_loss']['best_epoch']}. Every set of "
        "weights was scored once on the test set after training; nothing was chosen on it."
    )
    rows = [
        [
            f"early stopping on {m.replace('_', ' ')}",
            c["best_epoch"],
            c["stop_epoch"] or "—",
            f"{100 * c['val_accuracy']:.2f}",
            f"{100 * c['test_accuracy']:.2f}",
        ]
        for m, c in criteria.items()
    ]
    last = summary["val_accuracy_at_last_epoch"]
    final_test = summary["test_accuracy_without_early_stopping"]
    rows.append(
        ["no early stopping (last epoch)", len(results), "—", f"{100 * last:.2f}", f"{100 * final_test:.2f}"]
    )
    report.table(["weights", "epoch kept", "stops at", "val acc. (%)", "test acc. (%)"], rows)
    return report


def _figure(out, results: list[EpochResult], summary: dict, s: dict):
    fig, (ax_e, ax_l) = plots.new_figure(2)
    epochs = np.array([r.epoch for r in results])
    ax_e.plot(epochs, [100 * (1 - r.train_accuracy) for r in results], "-", label="training error")
    ax_e.plot(epochs, [100 * (1 - r.val_accuracy) for r in results], "-", label="validation error")
    ax_l.plot(epochs, [r.train_loss for r in results], "-", label="training loss")
    ax_l.plot(epochs, [r.val_loss for r in results], "-", label="validation loss")
    loss_pick = summary["criteria"]["val_loss"]["best_epoch"]
    for ax in (ax_e, ax_l):
        ax.axvline(loss_pick, color="purple", ls="-.", label=f"on val loss it would keep epoch {loss_pick}")
        ax.axvline(
            summary["best_epoch"],
            color="g",
            ls="--",
            label=f"early stopping (val acc.) keeps epoch {summary['best_epoch']}",
        )
        if summary["stop_epoch"]:
            ax.axvline(
                summary["stop_epoch"], color="r", ls=":", label=f"and stops at epoch {summary['stop_epoch']}"
            )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_e.set(xlabel="epoch", ylabel="error (% of images misclassified)", title="Error")
    ax_l.set(xlabel="epoch", ylabel="cross-entropy loss (nats/image, log scale)", yscale="log", title="Loss")
    return plots.save_figure(fig, out / "overfitting.png")
