"""`mnistlab lab NAME` (the lecture's experiments) and `mnistlab report RUN_DIR` (a run's HTML report)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli.app import app


class Experiment(str, Enum):
    preprocessing = "preprocessing"
    batch_size = "batch-size"
    loss = "loss"
    overfitting = "overfitting"
    models = "models"


class LrScaling(str, Enum):
    none = "none"
    linear = "linear"


@app.command("lab")
def lab_command(
    name: Annotated[Experiment, typer.Argument(help="Which experiment to run.")],
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
    ] = LrScaling.none,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")
    ] = None,
) -> None:
    """Run one of the lecture's experiments; writes figures, report.html/.md, numbers and config.json."""
    import torch

    from mnistlab.lab import LabOptions, run_experiment

    if threads is not None:
        torch.set_num_threads(threads)
    options = LabOptions(quick=quick, out=out, seed=seed, lr_scaling=lr_scaling.value, threads=threads)
    if options.out is None:
        from datetime import datetime

        options.out = Path("lab") / f"{datetime.now():%Y%m%d-%H%M%S}-{name.value}"
    t0 = time.perf_counter()
    run_experiment(name.value, options)
    typer.echo(
        f"lab {name.value}: done in {time.perf_counter() - t0:.0f} s; open {options.out / 'report.html'}"
    )


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
