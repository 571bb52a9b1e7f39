"""`mnistlab lab NAME` (the lecture's experiments), `mnistlab report RUN_DIR` (a run's HTML report), and the
extras of `mnistlab train` (--seeds, --report, --tensorboard), which train_cmd hands to :func:`train_with_extras`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli.app import app
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.lab import EXPERIMENTS
from mnistlab.lab.options import LrScaling


@app.command("lab")
def lab_command(
    name: Annotated[str, typer.Argument(help="Which experiment: " + ", ".join(EXPERIMENTS) + ".")],
    quick: Annotated[
        bool, typer.Option(help="Smaller data and fewer epochs/seeds: about 2 minutes on 2 cores.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: lab/<timestamp>-<name>).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (init, split, data order).")] = 0,
    lr_scaling: Annotated[
        LrScaling,
        typer.Option(
            help="batch-size only: scale the lr linearly with the batch size (full mode shows both)."
        ),
    ] = "none",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")
    ] = None,
) -> None:
    """Run one of the lecture's experiments; writes figures, report.html/.md, numbers and config.json."""
    import torch

    from mnistlab.lab import LabOptions, experiment
    from mnistlab.runs import create_run_dir, recording_errors

    run = experiment(name)  # an unknown name fails here, before a folder is made
    if threads is not None:
        torch.set_num_threads(threads)
    folder = create_run_dir(out, name, root="lab")
    t0 = time.perf_counter()
    with recording_errors(folder):  # error.txt beside what was written, e.g. when the disk is full
        run(LabOptions(quick=quick, out=folder, seed=seed, lr_scaling=lr_scaling, threads=threads))
    typer.echo(f"lab {name}: done in {time.perf_counter() - t0:.0f} s; open {folder / 'report.html'}")


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `mnistlab train`.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the dataset's IDX files.")] = None,
) -> None:
    """Learning curves, confusion matrix, per-class scores and galleries of a run, as one HTML page + PNGs."""
    from mnistlab.evaluation.report import run_report

    path = run_report(run_dir, out=out, data_dir=data_dir)
    typer.echo(f"report: {path}")


def _check_extras(
    config: TrainConfig, resume: bool, overwrite: bool, seeds: int, report: bool, tensorboard: bool
) -> None:
    """The combinations of train's extras that cannot work, as one-line ConfigErrors before anything runs."""
    if config.dry_run and (seeds != 1 or report):
        raise ConfigError("--dry-run writes nothing, so it cannot be combined with --seeds or --report")
    if resume and seeds != 1:
        raise ConfigError("--resume continues one run; it cannot be combined with --seeds")
    if overwrite and seeds != 1:
        raise ConfigError("--overwrite replaces one run; it cannot be combined with --seeds")
    if config.members > 1 and (seeds != 1 or tensorboard):
        raise ConfigError(
            "--members trains one committee: it cannot be combined with --seeds or --tensorboard"
        )


def train_with_extras(
    config: TrainConfig,
    *,
    resume: Path | None = None,
    overwrite: bool = False,
    seeds: int = 1,
    report: bool = False,
    tensorboard: bool = False,
) -> None:
    """Train ``config`` once or once per seed, with TensorBoard events and/or the HTML report per run."""
    from mnistlab.api import train
    from mnistlab.lab.repeat import format_mean_std, train_seeds
    from mnistlab.lab.tensorboard import TensorBoardLogger, check_tensorboard
    from mnistlab.runs import create_run_dir
    from mnistlab.training.distributed import is_main_process

    if tensorboard:
        check_tensorboard()  # fail before training, not after
    _check_extras(config, resume is not None, overwrite, seeds, report, tensorboard)
    loggers: list = []

    def callbacks_for(run_dir: Path) -> list:
        if not tensorboard or config.dry_run:
            return []
        loggers.append(TensorBoardLogger(run_dir / "tensorboard"))
        return [loggers[-1]]

    def after_run(run) -> None:
        for logger in loggers:
            logger.close()
        loggers.clear()
        if (
            report and run.path is not None and is_main_process()
        ):  # a committee's Run has a path on every rank
            from mnistlab.evaluation.report import run_report

            typer.echo(f"report: {run_report(run.path)}")

    if seeds == 1:
        folder = resume
        if folder is None and not config.dry_run and is_main_process():  # rank 0 alone makes folders
            # the callbacks need it before training (train() empties it first when overwriting)
            folder = create_run_dir(config.out, config.model.name, overwrite=overwrite)
            config.out = str(folder)
        callbacks = callbacks_for(folder) if folder else []
        after_run(train(config, resume=resume, overwrite=overwrite, callbacks=callbacks))
        return
    summary = train_seeds(config, seeds, callbacks_for=callbacks_for, after_run=after_run)
    typer.echo(
        f"{seeds} seeds: test accuracy {format_mean_std(summary['test_accuracy'], 100)} %, "
        f"training {format_mean_std(summary['train_seconds'], 1)} s per run; summary in {summary['out']}"
    )
