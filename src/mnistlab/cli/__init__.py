"""The command-line front end. It only parses arguments and calls the Python API.

Each command group lives in its own module and registers itself on the one Typer ``app`` built in
:mod:`mnistlab.cli.app`; :func:`main` turns user errors into one-line messages.
"""

from mnistlab.cli.app import app, main

__all__ = ["app", "main"]
