"""Test-only crash points: ``MNISTLAB_TEST_KILL_AT=<point>[@<n>]`` makes the process SIGKILL itself there.

The crash-matrix tests (tests/test_crash_matrix.py) use it to kill a training subprocess at an exact place,
e.g. between writing the checkpoint and appending the metrics line, and then check that a resume ends in the
same weights as an uninterrupted run. ``@n`` picks the n-th time the point is reached (default the first).
The points are plain strings named where :func:`crash_point` is called:

- ``run-folder-ready``: the run folder holds config.json and an empty metrics.jsonl, no checkpoint yet;
- ``step``: after each optimiser step (so ``step@7`` is inside the second epoch of a 5-step epoch);
- ``checkpoint-saved``: last.safetensors is written, the epoch's metrics line is not;
- ``replace:<file name>``: inside an atomic write of that file, its temporary file complete but not yet renamed.

Unset (always, outside those tests) it costs one comparison per call. Never set it in real use.
"""

from __future__ import annotations

import os
import signal

ENV = "MNISTLAB_TEST_KILL_AT"


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, count = value.partition("@")
    return point, int(count or 1)


_TARGET = _parse(os.environ.get(ENV))  # read once: the tests set it in the child's environment
_reached: dict[str, int] = {}


def crash_point(point: str) -> None:
    """SIGKILL this process if ``point`` is the one $MNISTLAB_TEST_KILL_AT names, at its n-th visit."""
    if _TARGET is None or point != _TARGET[0]:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
