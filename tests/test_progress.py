"""Console output of training: plain unwrapped lines and a progress line every few seconds when piped.

The cadence is checked with a fake clock (no waiting); the real command is checked piped, as `| cat` sees it.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
import types

import pytest

from mnistlab.training import progress
from mnistlab.training.progress import PIPE_INTERVAL, Reporter, format_seconds, mean_loss


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_piped_progress_prints_a_line_at_least_every_5_seconds_with_rate_loss_and_eta():
    assert PIPE_INTERVAL <= 5
    clock, out = FakeClock(), io.StringIO()
    reporter = Reporter(interactive=False, stream=out, clock=clock)
    losses, printed_at = [], []
    with reporter.epoch_bar("epoch 1/1", total=100) as on_step:
        for step in range(1, 101):
            clock.now += 0.7  # seconds per step of 128 images
            losses.append(float(step))
            before = out.getvalue().count("\n")
            on_step(step, 128 * step, losses)
            if out.getvalue().count("\n") > before:
                printed_at.append(clock.now)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(printed_at) >= 100 * 0.7 // 5
    gaps = [b - a for a, b in zip([0.0, *printed_at], printed_at, strict=False)]
    assert max(gaps) <= 5
    # The first line comes at step 6 (4.2 s): images/s = 6 x 128 / 4.2; running loss = mean of steps 1..6;
    # ETA = 94 steps x 0.7 s.
    assert lines[0] == "epoch 1/1  step 6/100  running loss 3.5000  183 images/s  ETA 1 min 06 s"
    # the running loss averages only the steps since the previous line (steps 7..12: mean 9.5)
    assert "step 12/100  running loss 9.5000" in lines[1]


def test_reporter_lines_are_never_wrapped_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    long = "epoch 1/2  " + "  ".join(f"field {i} 0.1234" for i in range(20))
    Reporter(interactive=False, stream=out).line(long)
    assert out.getvalue() == long + "\n"


def test_progress_is_silent_when_quiet_or_off():
    for reporter in (Reporter(quiet=True, interactive=False), Reporter(progress=False, interactive=False)):
        with reporter.epoch_bar("epoch 1/1", 10) as on_step:
            assert on_step is None


def test_terminal_bar_shows_running_loss_rate_and_eta():
    from rich.console import Console

    clock, out = FakeClock(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    reporter = Reporter(interactive=True, console=console, clock=clock)
    losses = []
    with reporter.epoch_bar("epoch 1/3", total=10) as on_step:
        for step in range(1, 6):
            clock.now += 1.0
            losses.append(0.5)
            on_step(step, 100 * step, losses)
    text = out.getvalue()  # the bar's last rendering, written when it stops
    assert "running loss 0.5000" in text and "100 images/s" in text and "ETA 5 s" in text


def test_helpers():
    assert format_seconds(59.4) == "59 s" and format_seconds(125) == "2 min 05 s"
    assert format_seconds(3725) == "1 h 02 min" and format_seconds(float("inf")) == "?"
    torch = pytest.importorskip("torch")
    assert mean_loss([torch.tensor(1.0), torch.tensor(2.0)]) == pytest.approx(1.5)
    assert mean_loss([]) != mean_loss([])  # nan


# ---- the real command, piped -------------------------------------------------------------------------------
LINE_FORMS = {
    "banner": r"mnistlab: mlp \([\d,]+ parameters\) on mnist, [\d,]+ train / [\d,]+ val images, device cpu, .*",
    "legend": r"each epoch: train and val loss \(nats/image\) and accuracy, the peak learning rate of its "
    r"steps, seconds; \* = best epoch so far by val_accuracy \(its weights are kept\)",
    "progress": r"epoch \d/2  step \d+/\d+  running loss \d+\.\d{4}  [\d,]+ images/s  ETA .+",
    "epoch": r"epoch \d/2  train loss \d\.\d{4} acc [\d.]+ %  val loss \d\.\d{4} acc [\d.]+ %  "
    r"peak lr \d\.\d\de[-+]\d\d  [\d.]+ s( {2}\*)?",
    "test": r"test accuracy [\d.]+ % \(loss \d\.\d{4}\) on 10,000 images, best epoch \d, [\d.]+ s training",
}


def classify(line: str) -> str:
    kinds = [kind for kind, form in LINE_FORMS.items() if re.fullmatch(form, line)]
    assert kinds, f"not a whole line of a known kind (broken mid-phrase?): {line!r}"
    return kinds[0]


TRAIN = ["train", "--model", "mlp", "--hidden", "64", "--train-subset", "4000", "--val-size", "1000"]
TRAIN += ["--epochs", "2", "--batch-size", "32", "--threads", "1"]


def test_train_piped_prints_whole_lines_only(tmp_path):
    """`mnistlab train ... | cat` at COLUMNS=80: every line whole (the banner alone is over 100 characters)."""
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab", *TRAIN, "--out", str(tmp_path / "run")],
        capture_output=True,  # stdout is a pipe, as with `| cat`
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    kinds = [classify(line) for line in done.stdout.splitlines()]
    assert kinds[:2] == ["banner", "legend"] and kinds[-1] == "test"
    assert kinds.count("epoch") == 2
    assert max(map(len, done.stdout.splitlines())) > 100  # a line that Rich would have wrapped at 80


def test_train_piped_reports_progress_every_few_seconds(tmp_path, capsys, monkeypatch):
    """The same run through the CLI with a replayed clock for the progress reporter, which advances 0.5 s at
    every reading (a step reads it about twice): progress lines come at least every 5 (replayed) seconds during
    each epoch, and are whole lines. (Scaled real time made this depend on the machine's speed: on a fast one an
    epoch ended before its second line.)"""
    from mnistlab.cli import main

    readings = itertools.count()
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: 0.5 * next(readings)))
    with pytest.raises(SystemExit) as exit_info:
        main([*TRAIN, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    kinds = [classify(line) for line in lines]
    assert kinds.count("progress") >= 4
    for epoch in ("1", "2"):
        steps = [
            int(re.search(r"step (\d+)/", x).group(1))
            for x in lines
            if x.startswith(f"epoch {epoch}/2  step")
        ]
        assert steps == sorted(steps) and len(steps) >= 2, lines
