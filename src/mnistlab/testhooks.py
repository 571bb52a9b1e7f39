"""Test-only crash points: ``MNISTLAB_TEST_KILL_AT=<point>[@<n>]`` makes the process SIGKILL itself there.

The crash-matrix tests (tests/test_crash_matrix.py) use it to kill a training subprocess at an exact place,
e.g. between writing the checkpoint and appending the metrics line, and then check that a resume ends in the
same weights as an uninterrupted run. ``@n`` picks the n-th time the point is reached (default the first).
The points are plain strings named where :func:`crash_point` is called:

- ``run-folder-ready``: the run folder holds config.json and an empty metrics.jsonl, no checkpoint yet;
- ``step``: after each optimiser step (so ``step@7`` is inside the second epoch of a 5-step epoch);
- ``checkpoint-saved``: last.safetensors is written, the epoch's metrics line is not;
- ``replace:<file name>``: inside an atomic write of that file, its temporary file complete but not yet renamed.

Unset (always, outside those tests) it costs one environment lookup per call. Never set it in real use.
"""

from __future__ import annotations

import os
import signal

ENV = "MNISTLAB_TEST_KILL_AT"


def crash_point(point: str) -> None:
    """SIGKILL this process if ``point`` is the one $MNISTLAB_TEST_KILL_AT names, at its n-th visit."""
    target = os.environ.get(ENV)
    if not target:
        return
    name, _, count = target.partition("@")
    if point != name:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_reached: dict[str, int] = {}  # visits per point, in this process
