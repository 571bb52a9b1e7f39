"""The command line: one-line errors without tracebacks, and a small real end-to-end run."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import write_idx

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnistlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )  # wide help, no wrapping


def small_dataset(
    folder: Path, n_train: int = 60, n_test: int = 20, n_train_labels: int | None = None
) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / MNIST_FILES[0], rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    write_idx(folder / MNIST_FILES[1], rng.integers(0, 10, n_train_labels or n_train, dtype=np.uint8))
    write_idx(folder / MNIST_FILES[2], rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(folder / MNIST_FILES[3], rng.integers(0, 10, n_test, dtype=np.uint8))
    return folder


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _corrupt_magic(folder: Path) -> None:
    path = folder / MNIST_FILES[0]
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x42  # data-type code: not a known IDX type
    path.write_bytes(gzip.compress(bytes(raw)))


def _truncate(folder: Path) -> None:
    path = folder / MNIST_FILES[2]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("magic", "train-images-idx3-ubyte.gz"),
        ("truncated", "t10k-images-idx3-ubyte.gz"),
        ("count", "train-labels-idx1-ubyte.gz"),
    ],
)
def test_bad_idx_files_give_one_line_errors_and_no_run_folder(tmp_path, case, needle):
    data = small_dataset(tmp_path / "data", n_train_labels=59 if case == "count" else None)
    {"magic": _corrupt_magic, "truncated": _truncate, "count": lambda f: None}[case](data)
    out = tmp_path / "run"
    result = mnistlab("train", "--data-dir", str(data), "--val-size", "10", "--out", str(out), cwd=tmp_path)
    assert_one_line_error(result, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data-dir", "/no/such/folder"], "/no/such/folder"),
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--batch-size", "0"], "batch size must be >= 1"),
        (["--epochs", "abc"], "'--epochs'"),
    ],
)
def test_bad_arguments_give_one_line_errors(tmp_path, args, needle):
    result = mnistlab("train", *args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = mnistlab("train", "--model", "resnet", "--debug", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_mentions_units():
    result = mnistlab("train", "--help")
    assert result.returncode == 0
    assert "Images per optimiser step" in result.stdout and "--dry-run" in result.stdout


def test_train_then_evaluate_on_a_real_slice(tmp_path):
    out = tmp_path / "run"
    result = mnistlab(
        "train",
        "--model",
        "mlp",
        "--hidden",
        "64",
        "--epochs",
        "1",
        "--train-subset",
        "3000",
        "--val-size",
        "1000",
        "--out",
        str(out),
        "--threads",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8

    result = mnistlab("evaluate", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert sum(map(sum, report["confusion_matrix"])) == 10_000

    result = mnistlab("evaluate", str(tmp_path / "missing"), cwd=tmp_path)
    assert_one_line_error(result, "does not exist")


def test_data_info_and_verify():
    result = mnistlab("data", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 4
    info = mnistlab("data", "info")
    assert info.returncode == 0 and "(60000, 28, 28)" in info.stdout


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("lab", ["not a run folder", "mnistlab lab loss", "report.html"]),
        ("seeds", ["not a run folder", "--seeds", "seed-0"]),
        ("empty", ["not a run folder (no config.json)"]),
        ("members", ["not a run folder", "a committee's members", "use the committee", "members/0"]),
    ],
)
def test_evaluate_says_what_a_folder_is_when_it_is_not_a_run(tmp_path, capsys, kind, needles):
    from mnistlab.cli import main

    folder = tmp_path / kind
    folder.mkdir()
    if kind == "lab":  # what `mnistlab lab loss` writes
        (folder / "config.json").write_text(json.dumps({"experiment": "loss", "quick": False}))
        (folder / "report.html").write_text("<html></html>")
    elif kind == "seeds":  # what `mnistlab train --seeds 2` writes
        (folder / "summary.json").write_text("{}")
        for k in (0, 1):
            (folder / f"seed-{k}").mkdir()
            (folder / f"seed-{k}" / "config.json").write_text("{}")
    elif kind == "members":  # RUN/members of `mnistlab train --members 2`
        (tmp_path / "config.json").write_text("{}")
        for k in (0, 1):
            (folder / str(k)).mkdir()
            (folder / str(k) / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(folder)])
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_no_score_test_is_refused_beside_the_flags_that_score_test(tmp_path):
    for extra in (["--seeds", "2"], ["--report"], ["--nproc", "2", "--seeds", "2"]):  # before any launch
        result = mnistlab("train", "--no-score-test", "--out", str(tmp_path / "run"), *extra)
        assert_one_line_error(result, "--no-score-test", "--seeds and --report")
        assert not (tmp_path / "run").exists()
