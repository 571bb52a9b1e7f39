"""`mnistlab train` and `mnistlab evaluate`. Heavy modules (torch, via the API) are imported when a command runs."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli.app import app
from mnistlab.cli.config_options import ConfigFlags, config_from_flags, resume_safe_flags, with_config_options
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError

RESUME_HELP = (
    "Continue the interrupted run in this folder. Other flags must match its config, except "
    + ", ".join(resume_safe_flags())
    + " (e.g. more --epochs), which are recorded in its summary's config_history. A committee, complete or "
    "not, also grows: --members N larger than it has trains the new members and combines them all."
)


@app.command("train")
@with_config_options()  # one flag per TrainConfig field, e.g. --lr, --val-size, --warmup
def train_command(
    ctx: typer.Context,
    config_flags: ConfigFlags,
    resume: Annotated[Path | None, typer.Option(help=RESUME_HELP)] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the earlier run in --out (e.g. one stopped before its first checkpoint); "
            "refused for a folder that holds no mnistlab run."
        ),
    ] = False,
    seeds: Annotated[
        int, typer.Option(help="Train once per seed (seed..seed+N-1), each in OUT/seed-K, plus a summary.")
    ] = 1,
    report: Annotated[
        bool, typer.Option(help="Write the run's HTML report (RUN/report) at the end.")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option(help="Also write TensorBoard event files (RUN/tensorboard).")
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            help="Launch this many processes on this machine with torchrun (one per GPU, or CPU "
            "processes). One run: data-parallel, --batch-size stays the global batch. A committee "
            "(--members N): member K trains whole on process K % nproc, no gradients exchanged."
        ),
    ] = None,
) -> None:
    """Train a model (default: the fast CNN on MNIST), then score the test set once (unless --no-score-test).

    --members N trains a committee: N runs in RUN/members/K (seeds seed..seed+N-1, one validation split),
    combined by the mean of their softmax outputs. Alone, --members N uses the committee recipe (the best
    member recipe, with distortions); with --model X, X's long-budget recipe.
    """
    config = config_from_flags(config_flags, resume)  # once, here: a bad flag fails before any process starts
    if not config.score_test and (seeds != 1 or report):
        raise ConfigError(
            "--no-score-test (given now or when the run was started) withholds the test split, which --seeds "
            "and --report score; --score-test allows them"
        )
    if nproc is not None:
        _launch_torchrun(nproc, ctx, config)
        return
    if seeds != 1 or report or tensorboard:
        from mnistlab.cli.lab_cmd import train_with_extras

        train_with_extras(
            config, resume=resume, overwrite=overwrite, seeds=seeds, report=report, tensorboard=tensorboard
        )
        return
    train(config, resume=resume, overwrite=overwrite)


def train(config, resume: Path | None = None, overwrite: bool = False):
    """:func:`mnistlab.api.train`, imported when a run starts (it loads torch)."""
    from mnistlab.api import train as api_train

    return api_train(config, resume=resume, overwrite=overwrite)


def _launch_torchrun(nproc: int, ctx: typer.Context, config: TrainConfig) -> None:
    """Re-run this very command line, minus --nproc, in ``nproc`` processes under torchrun; ``config`` is the
    command's, already resolved, so a bad flag fails here, once, not in every process."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if config.engine == "numpy":
        raise ConfigError(f"--nproc {nproc}: --engine numpy trains in one process")
    global_batch = config.batch_size
    if config.members == 1 and global_batch % nproc:  # a committee's members each train alone
        raise ConfigError(
            f"--batch-size {global_batch} is the global batch and must divide by --nproc {nproc}"
        )
    from mnistlab.training import distributed

    code = distributed.launch(nproc, ["train", *forwarded_options(ctx, skip=("nproc",))])
    if code:
        raise typer.Exit(code)


def forwarded_options(ctx: typer.Context, skip: tuple[str, ...] = ()) -> list[str]:
    """The options the user gave on the command line, rebuilt as arguments (for a relaunch)."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name in skip or source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[name]
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            secondary = getattr(param, "secondary_opts", [])
            if value or not secondary:
                args.append(param.opts[0])
            else:
                args.append(secondary[0])
        else:
            args += [param.opts[0], str(value.value if isinstance(value, Enum) else value)]
    return args


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `mnistlab train`.")],
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the dataset's IDX files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
) -> None:
    """Score a trained run on the test set: loss, accuracy, confusion matrix, per-class F1."""
    from mnistlab.api import load_run

    result = load_run(run_dir).evaluate(data_dir=data_dir)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"test accuracy {100 * result['accuracy']:.2f} %  loss {result['loss']:.4f}  "
        f"({result['images']:,} images, macro F1 {result['macro_f1']:.4f})"
    )
    typer.echo("confusion matrix (rows = true label, columns = predicted):")
    typer.echo("      " + " ".join(f"{c:>5}" for c in range(10)))
    for label, row in enumerate(result["confusion_matrix"]):
        typer.echo(f"  {label:>3} " + " ".join(f"{v:>5}" for v in row))
