"""Run one training recipe once per seed and summarise: ``mnistlab train --seeds N``.

Seeds are ``config.seed .. config.seed + N - 1``; each run gets its own sub-folder ``seed-<k>`` of ``out`` and
is a normal run folder (so ``mnistlab report`` works on it). ``summary.json`` / ``summary.md`` give the mean
and sample standard deviation of test accuracy and training time. The test set is scored once per run, by
:func:`mnistlab.training.fit.fit`, after its own validation-chosen epoch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from mnistlab.config import TrainConfig, with_values
from mnistlab.errors import ConfigError
from mnistlab.evaluation.report import write_json
from mnistlab.fileio import atomic_write
from mnistlab.runs import Run, create_run_dir
from mnistlab.training.distributed import is_main_process
from mnistlab.training.fit import EpochCallback, fit
from mnistlab.training.progress import Reporter


def aggregate(values: Sequence[float]) -> dict:
    """Mean and *sample* standard deviation (n - 1 in the denominator; 0.0 for a single value)."""
    if not values:
        raise ValueError("aggregate needs at least one value")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values), "values": list(values)}


def train_seeds(
    config: TrainConfig,
    seeds: int,
    *,
    out: str | Path | None = None,
    reporter: Reporter | None = None,
    callbacks_for: Callable[[Path], Sequence[EpochCallback]] | None = None,
    after_run: Callable[[Run], None] | None = None,
) -> dict:
    """Train ``config`` with ``seeds`` consecutive seeds; write and return the summary.

    ``callbacks_for(run_dir)`` may give per-run epoch callbacks (e.g. TensorBoard); ``after_run(run)`` is
    called once each run is finished (e.g. to write its report).
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if not config.score_test:
        raise ConfigError(
            "--seeds reports test accuracy over seeds; it does not combine with --no-score-test"
        )
    # Under torchrun only rank 0 makes folders and writes files; the other ranks train alongside it.
    main = is_main_process()
    root = create_run_dir(out or config.out, f"{config.model.name}-seeds") if main else None
    runs = []
    for k in range(config.seed, config.seed + seeds):
        cfg = with_values(config, {"seed": k, "out": str(root / f"seed-{k}") if root else None})
        callbacks = callbacks_for(Path(cfg.out)) if callbacks_for and cfg.out else ()
        run = fit(cfg, reporter=reporter, callbacks=callbacks)
        if after_run is not None:
            after_run(run)
        runs.append(run)
    summary = summarise_runs([r.summary for r in runs], config)
    if root is not None:
        write_json(root / "summary.json", summary)
        atomic_write(root / "summary.md", summary_markdown(summary))
    return summary | {"out": str(root)}


def summarise_runs(summaries: Sequence[dict], config: TrainConfig) -> dict:
    """Aggregate per-seed run summaries (each needs test_accuracy, train_seconds, seed, epochs_run)."""
    return {
        "model": config.model.name,
        "dataset": config.data.dataset,
        "seeds": [s["seed"] for s in summaries],
        "test_accuracy": aggregate([s["test_accuracy"] for s in summaries]),
        "train_seconds": aggregate([s["train_seconds"] for s in summaries]),
        "seconds_per_epoch": aggregate([s["train_seconds"] / max(s["epochs_run"], 1) for s in summaries]),
        "runs": [
            {k: s.get(k) for k in ("seed", "test_accuracy", "train_seconds", "epochs_run", "best_epoch")}
            for s in summaries
        ],
    }


def summary_markdown(summary: dict) -> str:
    acc, sec = summary["test_accuracy"], summary["train_seconds"]
    lines = [
        f"# {summary['model']} on {summary['dataset']}: {acc['n']} seeds",
        "",
        f"Test accuracy: **{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} %** (mean ± sample std).  ",
        f"Training time: {sec['mean']:.2f} ± {sec['std']:.2f} s per run.",
        "",
        "| seed | test accuracy (%) | training time (s) | epochs | best epoch |",
        "|---|---|---|---|---|",
    ]
    for r in summary["runs"]:
        lines.append(
            f"| {r['seed']} | {100 * r['test_accuracy']:.2f} | {r['train_seconds']:.2f} | {r['epochs_run']} | "
            f"{r['best_epoch']} |"
        )
    return "\n".join(lines) + "\n"


def format_mean_std(stats: dict, scale: float = 1.0, digits: int = 2) -> str:
    if math.isnan(stats["mean"]):
        return "—"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
