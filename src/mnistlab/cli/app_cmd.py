"""`mnistlab predict`, `mnistlab serve` and `mnistlab export`: use a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mnistlab.app.formats import ExportFormat
from mnistlab.app.serve_config import ServeConfig, ServeLimits
from mnistlab.cli.app import app
from mnistlab.errors import MnistlabError


@app.command("predict")
def predict_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `mnistlab train`.")],
    images: Annotated[list[Path], typer.Argument(help="PNG, JPEG, BMP, GIF or WebP files, one digit each.")],
    top_k: Annotated[int, typer.Option(min=1, max=10, help="Classes to show per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    save_input: Annotated[
        Path | None, typer.Option(help="Write the 28x28 image the model saw, as PNG, into this folder.")
    ] = None,
    raw: Annotated[
        bool, typer.Option(help="Skip MNIST-style normalisation: just fix polarity and resize to 28x28.")
    ] = False,
    number: Annotated[
        bool,
        typer.Option(
            "--number",
            help="Read a whole number written in one row (e.g. 2026): each digit and its probability.",
        ),
    ] = False,
) -> None:
    """Predict the digit in each image. A bad file gets its own error; the exit code is 1 if any failed.

    With --number each image holds a row of digits; the JSON adds "number" and "digits" (label,
    probability, box [x0, y0, x1, y1]), and --save-input writes each digit's 28x28.

    Saving the inputs (--save-input) is a side job: when it fails (a full disk) every prediction is still
    printed, then one error line, and the exit code is 1.
    """
    from mnistlab.api import load_run
    from mnistlab.app.predict import predict_files

    if raw and number:
        raise typer.BadParameter("--raw and --number do not go together: a number is read digit by digit")
    run = load_run(run_dir)
    results = predict_files(run, images, raw=raw, number=number)
    unsaved: list[str] = []
    for index, result in enumerate(results):
        if result.error is None and save_input is not None:
            unsaved += _save_inputs(result, save_input, index)
        _echo_result(result, top_k, as_json)
    failed = sum(r.error is not None for r in results)
    if failed:
        typer.echo(f"{failed} of {len(results)} files failed", err=True)
    if unsaved:
        more = f" (and {len(unsaved) - 1} more)" if len(unsaved) > 1 else ""
        typer.echo(f"mnistlab: error: --save-input failed: {unsaved[0]}{more}", err=True)
    if failed or unsaved:
        raise typer.Exit(1)


def _save_inputs(result, folder: Path, index: int) -> list[str]:
    """Write what the model saw for one file (each digit's 28x28 with --number); the errors, if any."""
    from mnistlab.app.predict import save_input as write_input

    if result.digits is None:
        seen = [(result.input_28x28, result.source)]
    else:
        stem = Path(result.source).stem
        seen = [(d.input_28x28, f"{stem}-digit{k}.png") for k, d in enumerate(result.digits)]
    errors = []
    for digit, name in seen:
        try:
            write_input(digit, folder, index, name)
        except MnistlabError as exc:
            errors.append(str(exc))
    return errors


def _echo_result(result, top_k: int, as_json: bool) -> None:
    """One line per file: JSON, an error on stderr, the number with each digit's probability, or the top k."""
    if as_json:
        typer.echo(json.dumps(result.to_json(top_k)))
    elif result.error is not None:
        typer.echo(f"{result.source}: error: {result.error}", err=True)
    elif result.digits is not None:
        each = "  ".join(f"{d.label}: {d.probability:6.2%}" for d in result.digits)
        typer.echo(f"{result.source}: {result.number}   ({each})")
    else:
        top = "  ".join(f"{c}: {p:6.2%}" for c, p in result.top_k(top_k))
        typer.echo(f"{result.source}: {result.label}   ({top})")


@app.command("serve")
def serve_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `mnistlab train`.")],
    host: Annotated[
        str, typer.Option(help="Interface to bind; the default is this machine only.")
    ] = ServeConfig.host,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")
    ] = ServeConfig.port,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="Server processes sharing the port, each with its own model copy."),
    ] = ServeConfig.workers,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.001, help="Seconds a request's headers, then its body, may take to arrive; then 408."
        ),
    ] = ServeLimits.request_timeout,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Requests in progress per worker; more get 503 with Retry-After.")
    ] = ServeLimits.max_in_flight,
    torch_threads: Annotated[
        int, typer.Option(min=1, help="torch threads of each worker's one inference thread.")
    ] = ServeLimits.torch_threads,
) -> None:
    """Serve the draw-a-digit page and the JSON API (POST /api/predict, GET /api/model, GET /healthz)."""
    from mnistlab.api import load_run
    from mnistlab.app.serving import bind, serve, url

    limits = ServeLimits(
        request_timeout=request_timeout, max_in_flight=max_in_flight, torch_threads=torch_threads
    )
    config = ServeConfig(str(run_dir), host=host, port=port, workers=workers, limits=limits)
    sock = bind(host, port)  # first: a taken port is the only message, before any "serving"
    try:
        run = load_run(run_dir)
    except BaseException:
        sock.close()
        raise
    processes = f"{workers} worker processes" if workers > 1 else "1 process"
    bound_url = url(host, sock.getsockname()[1])
    typer.echo(f"mnistlab: serving {run_dir} at {bound_url}  ({processes}; Ctrl-C to stop)")
    serve(config, sock, run)


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `mnistlab train`.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="Output file (default: RUN_DIR/model.onnx or model.torchscript.pt).")
    ] = None,
    dynamo: Annotated[
        bool,
        typer.Option(help="Use torch's dynamo ONNX exporter (slower) instead of the TorchScript-based one."),
    ] = False,
) -> None:
    """Export the model with its preprocessing; input float32 (N, 28, 28) pixels 0-255, output logits (N, 10).

    The export is checked against PyTorch on 1,000 test images (max |Δlogit| <= 1e-4, same argmax for all)
    and is not written if it fails.
    """
    from mnistlab.api import load_run
    from mnistlab.app.export import export_run

    run = load_run(run_dir)
    fmt = format
    target = out or Path(run_dir) / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    report = export_run(run, fmt, target, exporter="dynamo" if dynamo else "legacy")
    typer.echo(
        f"wrote {report.path} ({fmt}); checked on {report.images} test images: "
        f"max |Δlogit| {report.max_abs_logit_diff:.2e} (limit 1e-04), "
        f"argmax agreement {report.argmax_agree}/{report.images}"
    )
