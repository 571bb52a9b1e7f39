"""Console output for training: one summary line per epoch and a Rich progress bar inside each epoch.

The bar is shown only on a terminal, and never with ``quiet``; summary lines go to stderr-free stdout so
that logs stay readable when output is redirected.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter:
    def __init__(self, quiet: bool = False, progress: bool = True, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.show_bar = progress and not quiet and sys.stdout.isatty()

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)

    @contextlib.contextmanager
    def epoch_bar(self, description: str, total: int) -> Iterator[Callable[[int], None] | None]:
        """Yield an on_step(n_done) callback driving a transient progress bar, or None when hidden."""
        if not self.show_bar:
            yield None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)
