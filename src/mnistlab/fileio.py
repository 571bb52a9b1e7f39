"""The one way mnistlab writes a file: a temporary file in the same folder, fsync, then ``os.replace``.

A reader (or a crash, Ctrl-C, a full disk) never sees a half-written file: either the old file or the new one
is there. On any failure the temporary file is removed. Files get the permissions ``open()`` would give them,
``0o666 & ~umask`` (0644 under the usual umask 022), because the temporary file is created with
``os.open(..., 0o666)`` and the kernel applies the umask; ``tempfile.mkstemp`` would leave 0600.

Also here: reading and writing safetensors files, which run folders, checkpoints and model files all use.
This module imports nothing from mnistlab beyond the errors, and torch only when tensors are written or read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.errors import RunError

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without an error, it becomes ``path``.

    For writers that want a file name (safetensors, matplotlib, ONNX). The block may write the file, check
    it, and raise to throw it away: ``path`` is replaced only after the block succeeds. The temporary file
    exists (empty) when the block starts. Some writers replace it with a file of their own (safetensors
    creates its files 0600), so its mode is set again afterwards.
    """
    path = Path(path)
    tmp = _create_temp(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 with the umask applied by the kernel
    try:
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write text or bytes to ``path`` atomically; return the path."""
    raw = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return Path(path)


def atomic_save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save tensors as safetensors atomically; metadata values that are not strings are stored as JSON."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=meta)
    return Path(path)


def atomic_save_figure(path: str | Path, figure: Figure, dpi: int) -> Path:
    """Save a matplotlib figure as PNG atomically (the figure stays open; the caller owns it)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata; a missing or corrupt file is a RunError naming it.

    Nothing is unpickled: safetensors holds raw tensor bytes and a JSON header.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """{'fc.weight': t} -> {'model.fc.weight': t} for prefix 'model.': several state dicts share one file."""
    return {prefix + k: v for k, v in tensors.items()}


def split_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The inverse of :func:`with_prefix`: the tensors under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---- helpers ---------------------------------------------------------------------------------------------
def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` (O_EXCL: never someone else's file)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, _CREATE, 0o666))  # the umask applies, as for open()
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path}: could not create a temporary file beside it")


def _fsync(path: Path) -> None:
    """Flush the file's data to the disk before the rename makes it visible."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
