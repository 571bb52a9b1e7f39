"""The mutation runner of bench/*_mutations.py: apply one mutation to a source file, run the tests named for
it, restore the file whatever happens, and print which test (if any) went red."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what the mutation breaks, file relative to ROOT, exact text to replace (once), replacement, pytest args)
Mutation = tuple[str, str, str, str, list[str]]


def run_mutations(mutations: list[Mutation], only: list[str]) -> None:
    """Run every mutation, or only those whose index is in ``only`` (as typed on the command line)."""
    for i, mutation in enumerate(mutations):
        if not only or str(i) in only:
            _run_one(i, *mutation)


def _run_one(i: int, name: str, file: str, old: str, new: str, tests: list[str]) -> None:
    path = ROOT / file
    original = path.read_text()
    assert original.count(old) == 1, (name, old)
    path.write_text(original.replace(old, new))
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", *tests, "-p", "no:cacheprovider"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT / "src")},
        )
        # a collection or fixture ERROR is red too: the mutation broke something the tests import or set up
        failed = [line for line in r.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        caught = failed[0].split("::")[1].split(" ")[0] if failed else None
        print(
            f"[{i}] {name}: {'CAUGHT by ' + caught if caught else 'NOT CAUGHT'} (rc {r.returncode})",
            flush=True,
        )
        if not failed and r.returncode != 0:
            print(r.stdout[-1500:])
    finally:
        path.write_text(original)
