"""Root Typer app and the error boundary shared by every command."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.exceptions import TyperException

from mnistlab.errors import MnistlabError

app = typer.Typer(
    name="mnistlab",
    help="Build, train, study and use neural networks on MNIST-format data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """mnistlab: MNIST done properly. Add --debug to any command to see full tracebacks."""


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`; kept in one place so the order of
    # `mnistlab --help` is stable.
    for module in ("train_cmd", "data_cmd", "lab_cmd", "app_cmd"):
        importlib.import_module(f"mnistlab.cli.{module}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mnistlab` script: one-line errors, exit code 2 for usage and 1 for other errors."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    _register_commands()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="mnistlab", standalone_mode=False)
    except typer.Abort:
        _fail("interrupted", 130)
    except TyperException as exc:  # usage errors: bad flag, bad value (typer vendors its own click)
        if debug:
            raise
        _fail(exc.format_message() if hasattr(exc, "format_message") else str(exc), 2)
    except MnistlabError as exc:
        if debug:
            raise
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise SystemExit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    one_line = " ".join(message.split())
    print(f"mnistlab: error: {one_line}", file=sys.stderr)
    raise SystemExit(code)
