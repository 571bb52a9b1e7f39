"""`mnistlab train` and `mnistlab evaluate`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.api import load_run, recipe, train
from mnistlab.cli.app import app
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.training import distributed

R = "default: the model's recipe"  # help suffix for options whose default depends on --model


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class Schedule(str, Enum):
    constant = "constant"
    step = "step"
    cosine = "cosine"
    onecycle = "onecycle"


class Normalize(str, Enum):
    standardize = "standardize"
    center = "center"
    scale = "scale"
    raw = "raw"


class NormStats(str, Enum):
    global_ = "global"
    per_pixel = "per-pixel"


class Augment(str, Enum):
    none = "none"
    affine = "affine"
    elastic = "elastic"
    both = "both"


class Monitor(str, Enum):
    val_loss = "val_loss"
    val_accuracy = "val_accuracy"


def parse_hidden(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated integers like 512,256, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ConfigError(f"--hidden needs at least one width >= 1, got {text!r}")
    return widths


def build_config(model: str, overrides: dict[str, dict[str, object]]) -> TrainConfig:
    """Start from the model's recipe and apply the flags the user actually gave (None = not given)."""
    config = recipe(model)
    for section, values in overrides.items():
        target = config if section == "run" else getattr(config, section)
        for key, value in values.items():
            if value is not None:
                setattr(target, key, value.value if isinstance(value, Enum) else value)
    return config.validate()


@app.command("train")
def train_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option(help="Model name: cnn, mlp, lenet5, lenet-wide, deep-cnn, pytorch-example.")
    ] = "cnn",
    dataset: Annotated[str, typer.Option(help="Dataset name: mnist, fashion-mnist, kmnist.")] = "mnist",
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder with the four IDX files (.gz or plain).")
    ] = None,
    download: Annotated[bool, typer.Option(help="Download the dataset when no local copy is found.")] = True,
    epochs: Annotated[int | None, typer.Option(help=f"Maximum passes over the training split ({R}).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Images per optimiser step, global ({R}).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate ({R}).")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option(help=f"Optimiser ({R}).")] = None,
    schedule: Annotated[
        Schedule | None, typer.Option(help=f"Learning-rate schedule, per step ({R}).")
    ] = None,
    momentum: Annotated[float | None, typer.Option(help=f"SGD momentum ({R}).")] = None,
    nesterov: Annotated[bool | None, typer.Option(help=f"Nesterov momentum for SGD ({R}).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help=f"L2 weight decay ({R}).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing in [0, 1).")] = None,
    hidden: Annotated[
        str | None, typer.Option(help="MLP hidden widths, comma-separated, e.g. 512,256.")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help=f"Dropout probability ({R}).")] = None,
    width: Annotated[
        float | None, typer.Option(help="Multiplier of conv channel counts (1.0 = default).")
    ] = None,
    val_size: Annotated[
        int | None, typer.Option(help="Images held out of the 60,000 for validation.")
    ] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on only this many images.")] = None,
    normalize: Annotated[
        Normalize | None, typer.Option(help="Input transform fitted on the train split.")
    ] = None,
    norm_stats: Annotated[
        NormStats | None, typer.Option(help="One mean/std for all pixels, or per pixel.")
    ] = None,
    augment: Annotated[
        Augment | None,
        typer.Option(help=f"Distort training images: affine, elastic, or both in one sampling grid ({R})."),
    ] = None,
    rotate: Annotated[float | None, typer.Option(help="Augment: max rotation, degrees.")] = None,
    scale: Annotated[
        float | None, typer.Option(help="Augment: max zoom change, fraction (0.1 = ±10 %).")
    ] = None,
    shear: Annotated[float | None, typer.Option(help="Augment: max horizontal shear, degrees.")] = None,
    translate: Annotated[float | None, typer.Option(help="Augment: max shift per axis, pixels.")] = None,
    elastic_alpha: Annotated[
        float | None, typer.Option(help="Augment: elastic field scale alpha, pixels (Simard 2003).")
    ] = None,
    elastic_sigma: Annotated[
        float | None, typer.Option(help="Augment: elastic smoothing std sigma, pixels.")
    ] = None,
    clean_epochs: Annotated[
        int | None, typer.Option(help="Augment: train the last N epochs on undistorted images.")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping: epochs without improvement.")] = None,
    monitor: Annotated[Monitor | None, typer.Option(help="Validation metric for early stopping.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (init, split, data order).")] = 0,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N (auto picks CUDA if present).")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")
    ] = None,
    channels_last: Annotated[bool | None, typer.Option(help="channels_last memory format.")] = None,
    amp: Annotated[bool | None, typer.Option(help="bf16 autocast.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile.")] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            help="On CUDA, replay each training step as one CUDA graph (default on; off with --compile)."
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop each epoch after this many steps.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<timestamp>-<model>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this folder.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Run a few batches, write nothing, and stop.")] = False,
    seeds: Annotated[
        int, typer.Option(help="Train once per seed (seed..seed+N-1), each in OUT/seed-K, plus a summary.")
    ] = 1,
    report: Annotated[
        bool, typer.Option(help="Write the run's HTML report (RUN/report) at the end.")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option(help="Also write TensorBoard event files (RUN/tensorboard).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            help="Data-parallel: launch this many processes on this machine with torchrun "
            "(one per GPU, or CPU processes); --batch-size stays the global batch."
        ),
    ] = None,
) -> None:
    """Train a model (default: the fast CNN on MNIST), then score the test set once."""
    if nproc is not None:
        _launch_torchrun(nproc, ctx, resume, model, batch_size)
        return
    if resume is not None:
        train(resume=resume)
        return
    config = build_config(
        model,
        {
            "data": {
                "dataset": dataset,
                "data_dir": str(data_dir) if data_dir else None,
                "download": download,
                "val_size": val_size,
                "train_subset": train_subset,
                "normalize": normalize,
                "norm_stats": norm_stats,
            },
            "model": {"hidden": parse_hidden(hidden), "dropout": dropout, "width": width},
            "optim": {
                "optimizer": optimizer,
                "lr": lr,
                "schedule": schedule,
                "momentum": momentum,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
                "label_smoothing": label_smoothing,
            },
            "augment": {
                "kind": augment,
                "rotate": rotate,
                "scale": scale,
                "shear": shear,
                "translate": translate,
                "elastic_alpha": elastic_alpha,
                "elastic_sigma": elastic_sigma,
                "clean_epochs": clean_epochs,
            },
            "run": {
                "epochs": epochs,
                "batch_size": batch_size,
                "patience": patience,
                "monitor": monitor,
                "seed": seed,
                "device": device,
                "threads": threads,
                "channels_last": channels_last,
                "amp": amp,
                "compile": compile,
                "cuda_graphs": cuda_graphs,
                "max_steps": max_steps,
                "out": str(out) if out else None,
                "dry_run": dry_run,
                "quiet": quiet,
            },
        },
    )
    if seeds != 1 or report or tensorboard:
        from mnistlab.cli.lab_cmd import train_with_extras

        train_with_extras(config, seeds=seeds, report=report, tensorboard=tensorboard)
        return
    train(config)


def _launch_torchrun(
    nproc: int, ctx: typer.Context, resume: Path | None, model: str, batch_size: int | None
) -> None:
    """Re-run this very command line, minus --nproc, in ``nproc`` processes under torchrun."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if resume is None:  # fail here, once, rather than in every process
        global_batch = batch_size if batch_size is not None else recipe(model).batch_size
        if global_batch % nproc:
            raise ConfigError(
                f"--batch-size {global_batch} is the global batch and must divide by --nproc {nproc}"
            )
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
