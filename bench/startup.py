"""Start-up time of the command line: `mnistlab --help`, `--version`, a usage error, `train --help`.

Each command is run N times as a fresh process (``python -m mnistlab ...``, the interpreter running this
script, with this checkout's ``src`` first on PYTHONPATH); the median and the fastest wall times are reported,
next to an empty interpreter (``python -c pass``) as the floor. The target (issue 13) is <= 0.3 s for
`--help`, `--version` and usage errors: none of them may import torch.

    python bench/startup.py --runs 11 --out bench/results/startup.json
    python bench/startup.py --src /tmp/old/src      # another checkout's code, e.g. before a change
    python bench/startup.py --baseline /tmp/old/src # both, runs interleaved (fair on a loaded machine)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

COMMANDS = {
    "python -c pass (floor)": ["-c", "pass"],
    "mnistlab --help": ["-m", "mnistlab", "--help"],
    "mnistlab --version": ["-m", "mnistlab", "--version"],
    "mnistlab train --lr abc (usage error)": ["-m", "mnistlab", "train", "--lr", "abc"],
    "mnistlab train --epochs 0 (config error)": ["-m", "mnistlab", "train", "--epochs", "0"],
    "mnistlab train --help": ["-m", "mnistlab", "train", "--help"],
}


def time_command(args: list[str], runs: int, src: Path = SRC) -> dict:
    return time_interleaved(args, runs, [src])[0]


def time_interleaved(args: list[str], runs: int, srcs: list[Path]) -> list[dict]:
    """Each source folder's timings of ``args``; run k of every source comes before run k+1 of any, so that
    the load of a shared machine falls on all of them alike."""
    envs = [
        {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
        for src in srcs
    ]
    seconds: list[list[float]] = [[] for _ in srcs]
    codes: list[set[int]] = [set() for _ in srcs]
    for _ in range(runs):
        for k, env in enumerate(envs):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, *args], capture_output=True, env=env)
            seconds[k].append(time.perf_counter() - t0)
            codes[k].add(done.returncode)
    return [
        {
            "median_s": round(statistics.median(s), 4),
            "min_s": round(min(s), 4),
            "runs": runs,
            "exit_codes": sorted(c),
        }
        for s, c in zip(seconds, codes, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="runs per command (median reported)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--src", type=Path, default=SRC, help="the mnistlab source folder to time")
    parser.add_argument("--baseline", type=Path, help="another source folder, timed interleaved with --src")
    args = parser.parse_args()
    results, baseline = {}, {}
    for name, command in COMMANDS.items():
        timed = time_interleaved(command, args.runs, [args.src, *([args.baseline] if args.baseline else [])])
        results[name] = r = timed[0]
        line = f"{name:<44} median {r['median_s']:.3f} s  min {r['min_s']:.3f} s  exit {r['exit_codes']}"
        if args.baseline:
            baseline[name] = b = timed[1]
            line += f"  | baseline median {b['median_s']:.3f} s ({b['median_s'] / r['median_s']:.1f}x)"
        print(line)
    payload = {
        "src": str(args.src),
        "baseline_src": str(args.baseline) if args.baseline else None,
        "baseline": baseline or None,
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
