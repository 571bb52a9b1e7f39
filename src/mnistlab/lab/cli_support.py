"""`mnistlab train --seeds N / --report / --tensorboard`: the extras around :func:`fit`, kept out of the CLI."""

from __future__ import annotations

from pathlib import Path

import typer

from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.lab.repeat import format_mean_std, train_seeds
from mnistlab.lab.tensorboard import TensorBoardLogger, check_tensorboard
from mnistlab.training.fit import default_run_dir, fit
from mnistlab.training.run import Run


def train_with_extras(
    config: TrainConfig, *, seeds: int = 1, report: bool = False, tensorboard: bool = False
) -> None:
    if tensorboard:
        check_tensorboard()  # fail before training, not after
    if config.dry_run and (seeds != 1 or report):
        raise ConfigError("--dry-run writes nothing, so it cannot be combined with --seeds or --report")
    loggers: list[TensorBoardLogger] = []

    def callbacks_for(run_dir: Path) -> list:
        if not tensorboard or config.dry_run:
            return []
        loggers.append(TensorBoardLogger(run_dir / "tensorboard"))
        return [loggers[-1]]

    def after_run(run: Run) -> None:
        for logger in loggers:
            logger.close()
        loggers.clear()
        if report and run.path is not None:
            from mnistlab.evaluation.report import run_report

            typer.echo(f"report: {run_report(run.path)}")

    if seeds == 1:
        config.out = config.out or str(default_run_dir(config))
        run = fit(config, callbacks=callbacks_for(Path(config.out)))
        after_run(run)
        return
    summary = train_seeds(config, seeds, callbacks_for=callbacks_for, after_run=after_run)
    typer.echo(
        f"{seeds} seeds: test accuracy {format_mean_std(summary['test_accuracy'], 100)} %, "
        f"training {format_mean_std(summary['train_seconds'], 1, 1)} s per run; summary in {summary['out']}"
    )
