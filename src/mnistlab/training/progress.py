"""Console output of a training run: the banner, a legend, one line per epoch, and progress inside each epoch.

Where stdout goes decides the form:

- **a terminal**: a Rich bar per epoch with steps, running loss, images/s, elapsed time and ETA; it vanishes
  when the epoch's line is printed;
- **anything else** (a pipe, a log file, CI): plain lines that are never wrapped (Rich would break them at
  80 columns), and inside an epoch one progress line every :data:`PIPE_INTERVAL` seconds with the same
  figures, so that a log shows the run is alive and how fast it goes.

The running loss is the mean batch loss of the steps since the last update. Reading it back from the device
is the only host sync the progress adds, at most once per update (twice a second on a terminal).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

PIPE_INTERVAL = 4.0  # s between progress lines when not on a terminal (promised: at least one per 5 s)
BAR_REFRESH = 0.5  # s between two reads of the running loss for the terminal bar

# on_step(steps_done, images_done=None, step_losses=None): called after every optimiser step. step_losses
# holds every step's batch-mean loss so far in this epoch (floats, or 0-d tensors still on the device).
StepCallback = Callable[..., None]


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def mean_loss(losses: Sequence[Any]) -> float:
    """Mean of per-step losses (floats or 0-d tensors); nan for none. Tensors cost one host sync in all."""
    if not losses:
        return math.nan
    if hasattr(losses[0], "detach"):
        import torch

        return float(torch.stack(list(losses)).double().mean())
    return sum(losses) / len(losses)


def format_seconds(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min: the ETA and elapsed times of the progress."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class StepMeter:
    """Figures of one epoch in progress: rate, ETA and the running loss since the last reading."""

    def __init__(self, total_steps: int, clock: Callable[[], float]) -> None:
        self.total, self.clock = total_steps, clock
        self.start = clock()
        self.done, self.images = 0, None
        self.losses: Sequence[Any] = ()
        self.read_upto = 0  # losses before this index were already averaged into an earlier reading

    def update(self, done: int, images: int | None = None, losses: Sequence[Any] | None = None) -> None:
        self.done, self.images = done, images
        if losses is not None:
            self.losses = losses

    def running_loss(self) -> float:
        """Mean loss of the steps since the previous call (nan when none has a loss)."""
        window = self.losses[self.read_upto : self.done]
        self.read_upto = self.done
        return mean_loss(window)

    def figures(self, loss: float) -> str:
        """``running loss 0.3120  5,321 images/s  ETA 9 s`` (ETA: to the end of this epoch)."""
        elapsed = max(self.clock() - self.start, 1e-9)
        eta = (self.total - self.done) * elapsed / self.done if self.done else math.inf
        parts = []
        if math.isfinite(loss):
            parts.append(f"running loss {loss:.4f}")
        if self.images is not None:
            parts.append(f"{self.images / elapsed:,.0f} images/s")
        parts.append(f"ETA {format_seconds(eta)}")
        return "  ".join(parts)


class Reporter:
    """Prints a run's lines (unless ``quiet``) and its progress inside each epoch (unless ``progress`` is off).

    ``interactive`` (default: is stdout a terminal) chooses the Rich bar or the plain progress lines;
    ``clock`` and ``interval`` exist for tests, which replay time instead of waiting for it.
    """

    def __init__(
        self,
        quiet: bool = False,
        progress: bool = True,
        console: Any = None,
        *,
        interactive: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
        interval: float = PIPE_INTERVAL,
    ) -> None:
        self.quiet = quiet
        self.stream = stream  # None: sys.stdout when writing (so that a redirection made later is followed)
        self.interactive = is_terminal(stream or sys.stdout) if interactive is None else interactive
        self.show_progress = progress and not quiet
        self.console = console  # a rich Console; made on first use, on a terminal only
        self.clock, self.interval = clock or time.monotonic, interval
        self.last_line = self.clock()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            self._console().print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream or sys.stdout, flush=True)
        self.last_line = self.clock()

    @contextlib.contextmanager
    def epoch_bar(self, description: str, total: int) -> Iterator[StepCallback | None]:
        """Yield an ``on_step`` callback showing this epoch's progress, or None when progress is off."""
        if not self.show_progress:
            yield None
        elif self.interactive:
            with self._bar(description, total) as on_step:
                yield on_step
        else:
            yield self._pipe_progress(description, total)

    def _pipe_progress(self, description: str, total: int) -> StepCallback:
        """A plain line ``epoch 1/2  step 120/430  running loss 0.3120  5,321 images/s  ETA 9 s`` every
        ``interval`` seconds since the last line printed (of any kind)."""
        meter = StepMeter(total, self.clock)

        def on_step(done: int, images: int | None = None, losses: Sequence[Any] | None = None) -> None:
            meter.update(done, images, losses)
            if done < total and self.clock() - self.last_line >= self.interval:
                self.line(f"{description}  step {done}/{total}  {meter.figures(meter.running_loss())}")

        return on_step

    @contextlib.contextmanager
    def _bar(self, description: str, total: int) -> Iterator[StepCallback]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        meter = StepMeter(total, self.clock)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
        )
        with Progress(*columns, console=self._console(), transient=True) as bar:
            task = bar.add_task(description, total=total, figures="")
            state = {"read": -math.inf, "loss": math.nan}

            def on_step(done: int, images: int | None = None, losses: Sequence[Any] | None = None) -> None:
                meter.update(done, images, losses)
                if self.clock() - state["read"] >= BAR_REFRESH or done == total:
                    state["read"], state["loss"] = self.clock(), meter.running_loss()
                    bar.update(task, completed=done, figures=meter.figures(state["loss"]))
                else:
                    bar.update(task, completed=done)

            yield on_step

    def _console(self) -> Any:
        if self.console is None:
            from rich.console import Console

            self.console = Console(highlight=False, file=self.stream)
        return self.console
