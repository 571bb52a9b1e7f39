"""`mnistlab lab overfitting`: a large unregularised MLP on a small training subset, and early stopping.

Training runs to the end so that both curves are visible; an :class:`EarlyStopping` tracker watches the
validation loss alongside and records where it *would* have stopped and which epoch's weights it keeps.
Both models (the kept weights and the final weights) are scored on the test set once, after training.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import (
    EpochResult,
    LabOptions,
    load_splits,
    open_out_dir,
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
        # The project's default monitor. (The validation *loss* bottoms out much earlier than the accuracy
        # here: the model keeps getting more of the validation images right while growing over-confident on
        # the ones it gets wrong; both curves are plotted.)
        "monitor": "val_accuracy",
        "patience": 5 if quick else 10,  # epochs without a val-accuracy improvement before stopping
    }


def run(options: LabOptions) -> Report:
    out = open_out_dir("overfitting", options)
    s = settings(options.quick)
    write_config(out, "overfitting", options, s)
    cfg = recipe("mlp")
    cfg.model.hidden, cfg.model.dropout = tuple(s["hidden"]), s["dropout"]
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay = s["optimizer"], s["lr"], s["weight_decay"]
    cfg.optim.schedule, cfg.batch_size, cfg.seed = "constant", s["batch_size"], options.seed
    cfg.data.train_subset, cfg.data.val_size = s["train_subset"], s["val_size"]
    splits = load_splits(cfg)
    torch.manual_seed(options.seed)
    model = build_model("mlp", hidden=cfg.model.hidden, dropout=s["dropout"])

    stopper = EarlyStopping(mode="max" if s["monitor"] == "val_accuracy" else "min", patience=s["patience"])
    chosen: dict = {}  # frozen the first time the stopper says stop: {"stop_epoch", "best_epoch", "state"}

    def watch(result: EpochResult) -> None:
        if chosen:
            return
        stopper.update(getattr(result, s["monitor"]), result.epoch, model)
        if stopper.should_stop or result.epoch == s["epochs"]:
            stop = result.epoch if stopper.should_stop else None
            chosen.update(
                stop_epoch=stop, best_epoch=stopper.best_epoch, state=copy.deepcopy(stopper.best_state)
            )

    results = train_epochs(model, splits.train, splits.val, cfg, epochs=s["epochs"], on_epoch=watch)
    final_test = test_accuracy(model, splits.test)  # without early stopping: the last epoch's weights
    model.load_state_dict(chosen["state"])
    early_test = test_accuracy(model, splits.test)  # with early stopping: the weights it kept
    history = [r.record() for r in results]
    summary = {
        "best_epoch": chosen["best_epoch"],
        "stop_epoch": chosen["stop_epoch"],
        "epochs_run": len(results),
        "test_accuracy_with_early_stopping": early_test,
        "test_accuracy_without_early_stopping": final_test,
        "val_accuracy_at_best_epoch": results[chosen["best_epoch"] - 1].val_accuracy,
        "val_accuracy_at_last_epoch": results[-1].val_accuracy,
    }
    write_csv(out / "history.csv", history)
    write_json(out / "summary.json", summary)
    fig = _figure(out, results, summary, s)

    report = Report("Overfitting and early stopping")
    report.figure(fig, "Error (left) and loss (right) per epoch on the training subset and on validation.")
    report.text(
        f"An MLP with two hidden layers of {s['hidden'][0]} units, no dropout and no weight decay, trained with "
        f"Adam (lr {s['lr']}) on only {s['train_subset']:,} images for {s['epochs']} epochs"
        + (" (quick mode)." if options.quick else ".")
        + " The training error falls to zero: the network memorises the subset, while the validation error "
        "levels off far above it. The validation loss bottoms out early and then rises: the model grows "
        "over-confident on the images it gets wrong."
    )
    stop = summary["stop_epoch"]
    report.text(
        f"Early stopping (patience {s['patience']} epochs on the validation accuracy) keeps epoch {summary['best_epoch']}"
        + (f" and would stop at epoch {stop}." if stop else "; it never triggered.")
        + " Both models were scored once on the test set after training."
    )
    report.table(
        ["weights", "epoch", "val acc. (%)", "test acc. (%)"],
        [
            [
                "with early stopping",
                summary["best_epoch"],
                f"{100 * summary['val_accuracy_at_best_epoch']:.2f}",
                f"{100 * early_test:.2f}",
            ],
            [
                "without (last epoch)",
                len(results),
                f"{100 * summary['val_accuracy_at_last_epoch']:.2f}",
                f"{100 * final_test:.2f}",
            ],
        ],
    )
    report.write(out)
    return report


def _figure(out, results: list[EpochResult], summary: dict, s: dict):
    fig, (ax_e, ax_l) = plots.new_figure(2)
    epochs = np.array([r.epoch for r in results])
    ax_e.plot(epochs, [100 * (1 - r.train_accuracy) for r in results], "-", label="training error")
    ax_e.plot(epochs, [100 * (1 - r.val_accuracy) for r in results], "-", label="validation error")
    ax_l.plot(epochs, [r.train_loss for r in results], "-", label="training loss")
    ax_l.plot(epochs, [r.val_loss for r in results], "-", label="validation loss")
    for ax in (ax_e, ax_l):
        ax.axvline(
            summary["best_epoch"],
            color="g",
            ls="--",
            label=f"early stopping keeps epoch {summary['best_epoch']}",
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
