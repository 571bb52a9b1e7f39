"""The one file writer, the run-folder creator and the tolerant metrics reader."""

from __future__ import annotations

import contextlib
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
import torch

from mnistlab import runs
from mnistlab.errors import ConfigError, RunError
from mnistlab.fileio import atomic_path, atomic_save_tensors, atomic_write, load_tensors


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_get_the_mode_open_would_give_them(tmp_path, mask):
    with umask(mask):
        text = atomic_write(tmp_path / "a.json", "{}")
        raw = atomic_write(tmp_path / "b.bin", b"\x00\x01")
        # safetensors writes its own file, 0600 whatever the umask: the writer puts the mode back
        tensors = atomic_save_tensors(tmp_path / "c.safetensors", {"w": torch.ones(2)}, {"k": [1]})
    for path in (text, raw, tensors):
        assert mode(path) == 0o666 & ~mask, path.name
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    loaded, meta = load_tensors(tensors)
    assert torch.equal(loaded["w"], torch.ones(2)) and meta == {"k": "[1]"}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_run_folders_started_in_the_same_second_do_not_collide(tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 11, 30, 12, 0, 0)

    monkeypatch.setattr(runs, "datetime", Frozen)
    made = [runs.create_run_dir(None, "cnn", root=tmp_path) for _ in range(3)]
    assert [p.name for p in made] == ["20261130-120000-cnn", "20261130-120000-cnn-2", "20261130-120000-cnn-3"]


def test_a_named_folder_is_used_only_when_new_or_empty(tmp_path):
    assert runs.create_run_dir(tmp_path / "a" / "b", "cnn").is_dir()  # parents are made
    (tmp_path / "empty").mkdir()
    assert runs.create_run_dir(tmp_path / "empty", "cnn") == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("precious")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        runs.create_run_dir(tmp_path / "full", "cnn")


def test_metrics_reader_drops_a_torn_last_line_only(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "train_lo')
    assert runs.read_metrics(tmp_path) == [{"epoch": 1}, {"epoch": 2}]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(RunError, match=r"metrics\.jsonl: line 2 is not JSON"):
        runs.read_metrics(tmp_path)
    assert runs.read_metrics(tmp_path / "nowhere") == []


# ---- I/O errors, the folder lock, leftovers ------------------------------------------------------------------
EFBIG = """
import resource, signal, sys
from mnistlab.errors import WriteError
from mnistlab.fileio import atomic_save_tensors, atomic_write
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # bytes per file: a real EFBIG from the kernel
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
for write in (lambda p: atomic_write(p, "x" * 1000), lambda p: atomic_save_tensors(p, {"w": __import__("torch").ones(99)})):
    try:
        write(sys.argv[1])
    except WriteError as exc:
        print(exc)
"""


def test_a_write_past_the_file_size_limit_is_one_line_naming_the_file(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "big.txt"
    out = subprocess.run(
        [sys.executable, "-c", EFBIG, str(target)], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert lines[0] == f"{target}: cannot write: File too large"  # Python's own write
    assert lines[1].startswith(f"{target}: cannot write: ") and "File too large" in lines[1]  # safetensors'
    assert list(tmp_path.iterdir()) == []  # no temp file left, nothing half-written


def test_the_lock_admits_one_holder_and_goes_away_after(tmp_path):
    from mnistlab.fileio import file_lock

    lock = tmp_path / ".lock"
    with file_lock(lock, what="X"):
        assert lock.read_text().strip() == str(os.getpid())
        busy = rf"X is in use by another mnistlab process \(pid {os.getpid()}\)"
        with pytest.raises(RunError, match=busy), file_lock(lock, what="X"):  # a second open file: refused
            pass
    assert not lock.exists()
    lock.write_text("99999\n")  # left by a killed holder: nobody holds it
    with file_lock(lock, what="X"):
        assert lock.read_text().strip() == str(os.getpid())


def test_only_the_writers_own_temporary_files_are_removed(tmp_path):
    from mnistlab.fileio import remove_stale_temps

    names = [".last.safetensors.0a1b2c3d.tmp", ".summary.json.ffffffff.tmp", ".x.tmp", "a.0a1b2c3d.tmp"]
    for name in [*names, "keep.txt"]:
        (tmp_path / name).write_text("")
    (tmp_path / ".cache.0a1b2c3d.tmp").mkdir()  # a folder (the data cache's temp dirs): not ours
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".cache.0a1b2c3d.tmp",
        ".x.tmp",
        "a.0a1b2c3d.tmp",
        "keep.txt",
    ]


def test_a_folder_that_cannot_be_made_is_a_write_error(tmp_path):
    from mnistlab.errors import WriteError
    from mnistlab.fileio import make_dirs

    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match=rf"{tmp_path / 'file' / 'sub'}: cannot write: "):
        make_dirs(tmp_path / "file" / "sub")


def test_only_the_disks_refusals_become_write_errors_inside_an_atomic_block(tmp_path):
    """A block may read as it writes (a download): its network or read errors keep their own type."""
    import errno
    import urllib.error

    from mnistlab.errors import WriteError

    with pytest.raises(urllib.error.URLError), atomic_path(tmp_path / "a.gz"):
        raise urllib.error.URLError("Name or service not known")  # an OSError, but no disk's
    with (
        pytest.raises(WriteError, match=r"a.gz: cannot write: No space left on device"),
        atomic_path(tmp_path / "a.gz"),
    ):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
