"""A full disk (or any I/O error) gives a one-line error naming the file, error.txt where it can be written,
and loses nothing already computed.

Two ways to fill a disk without root or a real full mount:

- in-process, :func:`disk_full` makes the atomic writes of chosen file names fail with ENOSPC where a full
  disk reports it (at ``fsync``, when the data reaches the disk; the writer's one seam) and metrics appends
  fail too;
- end to end, a subprocess runs under ``RLIMIT_FSIZE`` with SIGXFSZ ignored: every write past the limit
  fails with EFBIG ("File too large"), from the kernel, in whatever library makes it (safetensors, PIL).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mnistlab
from conftest import write_synthetic_dataset
from mnistlab import fileio
from mnistlab.cli.app import main
from mnistlab.config import with_values
from mnistlab.errors import WriteError
from mnistlab.fileio import is_temp_file
from mnistlab.runs import read_config
from run_folders import SYNTHETIC_TEST, SYNTHETIC_TRAIN, finished_run, synthetic_config


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))  # not the user's decoded-array cache
    write_synthetic_dataset(tmp_path / "data", SYNTHETIC_TRAIN, SYNTHETIC_TEST)
    return tmp_path / "data"


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full("last.safetensors", ...)``: writes of files with those names fail with ENOSPC ("*": all);
    a name ending in "+" (``metrics.jsonl+``) fails only the appends to that file. Returns the set of names."""
    names: set[str] = set()
    real_fsync, real_append = fileio._fsync, fileio.append_text

    def full(path: Path, suffix: str = "") -> bool:
        name = path.name[1:].rsplit(".", 2)[0] if is_temp_file(path.name) else path.name
        return "*" in names or name + suffix in names

    def fsync(path: Path) -> None:
        if full(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(path)

    def append_text(path, text) -> None:
        with fileio.write_errors(path):
            if full(Path(path)) or full(Path(path), "+"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_append(path, text)

    monkeypatch.setattr(fileio, "_fsync", fsync)
    monkeypatch.setattr("mnistlab.runs.append_text", append_text, raising=False)
    return lambda *which: names.update(which) or names


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if is_temp_file(p.name)]


def weights(run) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def assert_same_run(folder: Path, reference) -> None:
    resumed = mnistlab.load_run(folder)
    for name, tensor in weights(reference).items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in reference.path.iterdir())


@pytest.mark.parametrize(
    "name", ["metrics.jsonl", "last.safetensors", "metrics.jsonl+", "model.safetensors", "summary.json"]
)
def test_train_on_a_full_disk_fails_on_one_line_and_resumes_to_the_same_run(data, tmp_path, disk_full, name):
    """metrics.jsonl: its creation; metrics.jsonl+: the first epoch's line, after that epoch's checkpoint."""
    reference = mnistlab.train(synthetic_config(tmp_path / "reference", data))
    folder = tmp_path / "run"
    disk_full(name)
    with pytest.raises(WriteError) as error:
        mnistlab.train(synthetic_config(folder, data))
    message, file = str(error.value), folder / name.rstrip("+")
    assert message.startswith(f"{file}: cannot write: No space left on device"), message
    assert f"continue the run with --resume {folder}" in message and "\n" not in message
    assert (folder / "error.txt").read_text().startswith(f"WriteError: {file}: cannot write")
    assert not temp_files(folder) and not (folder / ".lock").exists()
    trained = name in ("model.safetensors", "summary.json")
    if trained:  # every epoch was trained: the checkpoint keeps them
        assert (folder / "last.safetensors").is_file() and not (folder / "summary.json").exists()
    metrics = (folder / "metrics.jsonl").read_text() if trained else None
    disk_full().clear()  # space freed
    mnistlab.train(resume=folder)
    assert_same_run(folder, reference)
    assert not (folder / "error.txt").exists(), "a run that completed has no error.txt"
    if trained:  # not trained again: the epochs' records (with their seconds) are the ones written before
        assert (folder / "metrics.jsonl").read_text() == metrics


def test_train_through_the_cli_when_even_error_txt_cannot_be_written(data, tmp_path, disk_full, capsys):
    folder = tmp_path / "run"
    disk_full("*")
    args = ["train", "--model", "mlp", "--hidden", "16", "--data-dir", str(data), "--no-download"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--val-size", "50", "--epochs", "1", "--threads", "1", "-q", "--out", str(folder)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 1 and len(err) == 1, err
    assert err[0] == f"mnistlab: error: {folder / 'config.json'}: cannot write: No space left on device"
    assert list(folder.iterdir()) == []  # no temp file, no lock, no error.txt (it could not be written)
    disk_full().clear()
    run = mnistlab.train(synthetic_config(folder, data, epochs=1))  # an empty folder is free to use again
    assert run.summary["epochs_run"] == 1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_on_a_full_disk(data, tmp_path, disk_full, capsys, fmt):
    folder = finished_run(tmp_path / "run", data)
    out = tmp_path / "exports" / f"model.{fmt}"
    disk_full(out.name)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(folder), "--format", fmt, "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 1 and len(err) == 1, err
    assert err[0] == f"mnistlab: error: {out}: cannot write: No space left on device"
    assert list(out.parent.iterdir()) == []


def test_report_on_a_full_disk(data, tmp_path, disk_full, capsys):
    folder = finished_run(tmp_path / "run", data)
    disk_full("mistakes.png")
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(folder)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 1 and len(err) == 1, err
    assert (
        err[0]
        == f"mnistlab: error: {folder / 'report' / 'mistakes.png'}: cannot write: No space left on device"
    )
    assert (folder / "report" / "confusion_matrix.png").is_file() and not temp_files(folder)
    assert not (folder / "error.txt").exists(), "a failed report must not mark the run as failed"


def test_lab_on_a_full_disk_keeps_its_numbers_and_writes_error_txt(tmp_path, disk_full, capsys):
    out = tmp_path / "lab"
    disk_full("pairs.png")
    with pytest.raises(SystemExit) as exit_:
        main(["lab", "loss", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 1 and len(err) == 1, err
    assert err[0].startswith("mnistlab: error: ") and ": cannot write: No space left on device" in err[0]
    assert json.loads((out / "numbers.json").read_text())["pairs"], "numbers computed before the failure"
    assert (out / "error.txt").read_text().startswith("WriteError: ") and not temp_files(out)


def digits(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(n):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 10 + i : 14 + i] = 255
        Image.fromarray(pixels).save(folder / f"d{i}.png")
        paths.append(str(folder / f"d{i}.png"))
    return paths


def test_predict_prints_its_predictions_when_saving_inputs_fails(data, tmp_path, disk_full, capsys):
    folder = finished_run(tmp_path / "run", data)
    images = digits(tmp_path / "in", 3)
    disk_full("*")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(folder), *images, "--save-input", str(tmp_path / "seen")])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1
    assert [line.split(":")[0] for line in out.splitlines()] == images  # every prediction printed
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith(
        f"mnistlab: error: --save-input failed: {tmp_path / 'seen' / '0000-d0.png'}: cannot"
    )
    assert line.endswith("(and 2 more)") and not temp_files(tmp_path / "seen")


# ---- end to end: a real EFBIG from the kernel, in a subprocess ---------------------------------------------------
LIMITED = """
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # bytes per file; beyond: EFBIG
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead
sys.argv[0] = "mnistlab"
runpy.run_module("mnistlab", run_name="__main__")
"""


def mnistlab_with_file_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), *args], capture_output=True, text=True, timeout=300
    )


def test_train_with_a_file_size_limit_end_to_end(data, tmp_path):
    """100 KB per file: config.json and metrics fit, the first checkpoint (~155 KB) does not."""
    folder = tmp_path / "run"
    flags = ["--model", "mlp", "--hidden", "16", "--data-dir", str(data), "--no-download", "--val-size", "50"]
    flags += ["--batch-size", "32", "--epochs", "3", "--threads", "1", "-q", "--no-progress"]
    done = mnistlab_with_file_limit(100_000, "train", *flags, "--out", str(folder))
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(err) == 1, done.stderr
    assert err[0].startswith(f"mnistlab: error: {folder / 'last.safetensors'}: cannot write: "), err[0]
    assert "File too large" in err[0] and f"--resume {folder}" in err[0]
    assert (folder / "error.txt").is_file() and not temp_files(folder)
    config = read_config(folder)  # what the CLI made of the flags
    reference = mnistlab.train(with_values(config, {"out": str(tmp_path / "reference")}))
    resumed = mnistlab.train(resume=folder)  # without the limit: the run completes, as if never stopped
    assert_same_run(folder, reference)
    assert resumed.summary["epochs_run"] == 3


def test_predict_with_a_file_size_limit_end_to_end(data, tmp_path):
    folder = finished_run(tmp_path / "run", data)
    images = digits(tmp_path / "in", 2)
    done = mnistlab_with_file_limit(
        40, "predict", str(folder), *images, "--save-input", str(tmp_path / "seen")
    )
    assert done.returncode == 1, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == images
    (line,) = [x for x in done.stderr.splitlines() if x.strip()]
    assert "--save-input failed" in line and "File too large" in line and "Traceback" not in done.stderr
    assert not temp_files(tmp_path / "seen")
