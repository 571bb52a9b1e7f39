"""Root Typer app, plain-text help, ``--version``, and the error boundary shared by every command.

Start-up is part of the interface: ``mnistlab --help``, ``--version`` and usage errors must answer in well
under a second, so nothing here (or in the command modules, at import) loads torch, NumPy, matplotlib or
FastAPI; each command imports what it needs when it runs. ``tests/test_cli_startup.py`` checks it.

Help is plain text that reads at 80 columns and in a pipe (:mod:`mnistlab.cli.help`).
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.exceptions import TyperException

from mnistlab.cli.help import PlainTyper
from mnistlab.errors import MnistlabError

app = PlainTyper(
    name="mnistlab",
    help="Build, train, study and use neural networks on MNIST-format data. Add --debug to any command to "
    "see full tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version_text() -> str:
    """mnistlab's version, and torch's and Python's, read without importing torch (or scanning every
    installed package's metadata, which costs more than the rest of ``--version``)."""
    import importlib.util
    import platform
    import re
    from pathlib import Path

    from mnistlab import __version__

    torch = "not installed"
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.submodule_search_locations:
        version_file = Path(spec.submodule_search_locations[0]) / "version.py"
        text = version_file.read_text() if version_file.is_file() else ""
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        torch = found.group(1) if found else "unknown version"
    return f"mnistlab {__version__} (torch {torch}, Python {platform.python_version()})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """The root: its options come before the command (``mnistlab --version``)."""


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
