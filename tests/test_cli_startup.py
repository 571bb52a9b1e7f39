"""The command line starts fast and its help reads well at 80 columns.

Start-up time itself is measured by bench/startup.py (wall times are too noisy on a shared machine to assert);
what makes it fast is asserted here: `--help`, `--version` and usage errors never import torch (or NumPy,
matplotlib, FastAPI, Pillow), which take seconds to load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mnistlab.cli.config_options import help_text
from mnistlab.config import config_fields

HEAVY = ("torch", "numpy", "matplotlib", "fastapi", "PIL", "rich")

PROBE = """
import sys
from mnistlab.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
"""


def run_probe(*args: str, heavy: tuple[str, ...] = HEAVY) -> tuple[str, str]:
    code = f"HEAVY = {heavy!r}\n{PROBE}"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    heavy = re.search(r"HEAVY=(.*)", done.stderr).group(1)
    return heavy, done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("train", "--lr", "abc"),  # a usage error
        ("train", "--epochs", "0"),  # a config error
        ("evaluate",),  # a missing argument
        ("train", "--help"),
        ("data", "--help"),
        ("export", "--help"),
        ("lab", "--help"),
    ],
    ids=" ".join,
)
def test_help_version_and_usage_errors_import_no_heavy_library(args):
    heavy, output = run_probe(*args)
    assert heavy == "", f"mnistlab {' '.join(args)} imported {heavy}:\n{output}"


@pytest.mark.parametrize("args", [("--help",), ("--version",)], ids=" ".join)
def test_help_and_version_do_not_even_load_pydantic(args):
    # Typer coerces every option value through pydantic (about 0.1 s to import): the two commands a newcomer
    # tries first must not pay it.
    heavy, output = run_probe(*args, heavy=("pydantic",))
    assert heavy == "", f"mnistlab {' '.join(args)} imported {heavy}:\n{output}"


def test_version():
    done = subprocess.run([sys.executable, "-m", "mnistlab", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert re.fullmatch(r"mnistlab \d+\.\d+\.\d+\S* \(torch \S+, Python \d+\.\d+\.\d+\S*\)\n", done.stdout)


def help_at_80(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab", *args, "--help"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_help_at_80_columns_keeps_every_description_whole():
    text = help_at_80("train")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    # No word is cut at a hyphen (no-\nreport, per-\nclass) and nothing is truncated with an ellipsis.
    assert not [line for line in lines if re.search(r"\w-$", line)]
    assert "…" not in text
    flat = " ".join(text.split())
    for spec in config_fields():
        assert " ".join(help_text(spec).split()) in flat, spec.flag
    # descriptions get a column of at least 40 characters, not Rich's squeezed ~17
    widths = [len(line) - 34 for line in lines if line.startswith(" " * 34) and line.strip()]
    assert widths and max(widths) >= 40


@pytest.mark.parametrize(
    "command",
    [
        "",
        "evaluate",
        "predict",
        "serve",
        "export",
        "report",
        "lab",
        "lab committee",
        "lab augment",
        "data download",
    ],
)
def test_every_help_fits_80_columns_without_broken_words(command):
    lines = help_at_80(*command.split()).splitlines()
    assert max(map(len, lines)) <= 80
    assert not [line for line in lines if re.search(r"\w-$", line)]
