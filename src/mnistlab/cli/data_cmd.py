"""`mnistlab data info|verify|download`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnistlab.cli.app import app
from mnistlab.cli.help import PlainTyper
from mnistlab.data.registry import dataset_names, get_dataset_spec
from mnistlab.errors import DataError

data_app = PlainTyper(help="Find, check and download MNIST-format datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetArg = Annotated[str, typer.Argument(help="Dataset name: " + ", ".join(dataset_names()))]
DataDirOpt = Annotated[Path | None, typer.Option(help="Folder with the four IDX files (.gz or plain).")]


@data_app.command("info")
def info(dataset: DatasetArg = "mnist", data_dir: DataDirOpt = None) -> None:
    """Where the dataset is found, its shapes, label counts and pixel statistics."""
    from mnistlab.data import load_dataset

    spec = get_dataset_spec(dataset)
    arrays = load_dataset(spec.name, data_dir, download=False, progress=False)
    typer.echo(f"{spec.name}: {spec.description}")
    typer.echo(f"  source      {arrays.source}")
    for split, images, labels in (
        ("train", arrays.train_images, arrays.train_labels),
        ("test", arrays.test_images, arrays.test_labels),
    ):
        counts = [int((labels == c).sum()) for c in range(spec.num_classes)]
        typer.echo(
            f"  {split:<5} images {tuple(images.shape)} uint8, pixel mean {images.mean():.2f} "
            f"std {images.std():.2f} (0-255)"
        )
        typer.echo(f"        labels per class {counts}")
    typer.echo(f"  classes     {', '.join(spec.class_names)}")
    typer.echo(f"  license     {spec.license}")


@data_app.command("verify")
def verify(dataset: DatasetArg = "mnist", data_dir: DataDirOpt = None) -> None:
    """Check every file's MD5 against the published checksums."""
    from mnistlab.data import verify_dataset

    rows = verify_dataset(dataset, data_dir)
    for name, digest, ok in rows:
        typer.echo(f"  {'ok ' if ok else 'BAD'}  {digest}  {name}")
    bad = [name for name, _, ok in rows if not ok]
    if bad:
        raise DataError(f"{dataset}: checksum mismatch for {', '.join(bad)}")
    typer.echo(f"{dataset}: all {len(rows)} files match the published checksums")


@data_app.command("download")
def download(
    dataset: DatasetArg = "mnist",
    dest: Annotated[Path | None, typer.Option(help="Destination folder (default: the user cache).")] = None,
    force: Annotated[bool, typer.Option(help="Download even if a local copy is found elsewhere.")] = False,
) -> None:
    """Download a dataset from its mirrors into the cache (checked against MD5s; atomic writes)."""
    from mnistlab.data import default_cache_dir, download_dataset, locate_dataset

    spec = get_dataset_spec(dataset)
    if not force and dest is None:
        try:
            found = locate_dataset(spec.name, download=False, progress=False)
            typer.echo(f"{spec.name}: already available at {found} (use --force to download anyway)")
            return
        except DataError:
            pass
    target = dest or default_cache_dir() / spec.name
    target.mkdir(parents=True, exist_ok=True)
    path = download_dataset(spec, target)
    typer.echo(f"{spec.name}: downloaded to {path}")
