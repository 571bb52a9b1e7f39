"""The one way mnistlab writes a file: a temporary file in the same folder, fsync, then ``os.replace``.

A reader (or a crash, Ctrl-C, a full disk) never sees a half-written file: either the old file or the new one
is there. On any failure the temporary file is removed; a crash (SIGKILL, power loss) can leave one behind,
which :func:`remove_stale_temps` deletes once the folder's owner holds it again. A write that fails for
lack of space, size or permission is a one-line :class:`~mnistlab.errors.WriteError` naming the file. Files get the permissions ``open()`` would give them,
``0o666 & ~umask`` (0644 under the usual umask 022), because the temporary file is created with
``os.open(..., 0o666)`` and the kernel applies the umask; ``tempfile.mkstemp`` would leave 0600.

Also here: reading and writing safetensors files, which run folders, checkpoints and model files all use.
This module imports nothing from mnistlab beyond the errors, and torch only when tensors are written or read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.errors import RunError, WriteError
from mnistlab.testhooks import crash_point

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
# The errors of a write that the disk refused: full, quota, file size limit, read-only, I/O error.
DISK_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO") if hasattr(errno, name)
)
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # what _create_temp makes: .<name>.<8 hex>.tmp


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without an error, it becomes ``path``.

    For writers that want a file name (safetensors, matplotlib, ONNX). The block may write the file, check
    it, and raise to throw it away: ``path`` is replaced only after the block succeeds. The temporary file
    exists (empty) when the block starts. Some writers replace it with a file of their own (safetensors
    creates its files 0600), so its mode is set again afterwards.
    """
    path = Path(path)
    with write_errors(path):
        tmp = _create_temp(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 with the umask applied by the kernel
    try:
        with write_errors(path, only=DISK_ERRNOS):  # the block may also read (a download): not our errors
            yield tmp
        with write_errors(path):
            if stat.S_IMODE(tmp.stat().st_mode) != mode:
                os.chmod(tmp, mode)
            _fsync(tmp)  # a full disk may only say so here, when the data reaches it
            crash_point(f"replace:{path.name}")
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def write_errors(path: str | Path, only: frozenset[int] | None = None) -> Iterator[None]:
    """Turn an OSError raised inside the block (disk full, file too large, read-only, no permission) into a
    one-line WriteError naming ``path``; the original stays chained for ``--debug``. ``only``: just these
    errnos (a block that also reads, e.g. from the network, keeps its other errors)."""
    try:
        yield
    except OSError as exc:
        if only is not None and exc.errno not in only:
            raise
        raise WriteError(f"{path}: cannot write: {exc.strerror or exc}") from exc


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
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata=meta)
        except SafetensorError as exc:  # its I/O errors, e.g. "No space left on device (os error 28)"
            raise WriteError(f"{path}: cannot write: {exc}") from exc
    return Path(path)


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (not atomic: for logs whose torn last line the reader drops)."""
    with write_errors(path), Path(path).open("a", encoding="utf-8") as f:
        f.write(text)


def make_dirs(folder: str | Path) -> Path:
    """``mkdir -p``; a failure (no space, no permission, a file in the way) is a WriteError naming it."""
    with write_errors(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


@contextlib.contextmanager
def file_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block; removed when it ends.

    Another process holding it is a RunError at once (``what`` says what is locked), never a wait. The lock
    dies with its process (even on SIGKILL), so a stale lock file is simply taken over. Removing the file at
    the end is safe because a taker checks, once locked, that the path still names the file it locked.
    Without ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms mnistlab is tested on
        yield
        return
    path = Path(path)
    fd = _locked_fd(path, fcntl, what)
    try:
        with contextlib.suppress(OSError):  # the holder's pid, for the message of the one who is refused
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _locked_fd(path: Path, fcntl: Any, what: str) -> int:
    for _ in range(100):
        with write_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EWOULDBLOCK: held by another process
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunError(
                f"{what} is in use by another mnistlab process{pid}; wait for it to finish, or stop it"
            ) from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder removed it as we opened it: lock the new one
    raise RunError(f"{what}: could not lock {path}")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``folder``; return them.

    Call it only while holding the folder (its lock): another live writer's temporary file looks the same.
    """
    removed = []
    for entry in Path(folder).iterdir():
        if is_temp_file(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def is_temp_file(name: str) -> bool:
    """True for the name of an atomic write's temporary file (``.<name>.<8 hex>.tmp``)."""
    return _TEMP_NAME.fullmatch(name) is not None


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


_SAFETENSORS_DTYPES = {  # a safetensors header's dtype -> torch's name for it
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def header_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors as ``meta`` tensors: names, shapes and dtypes from its header, no data
    read and no memory allocated. A corrupt file, or a dtype torch cannot hold, is a RunError naming it."""
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}  # noqa: SIM118 - not a dict
            header = {name: (s.get_shape(), s.get_dtype()) for name, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    tensors = {}
    for name, (shape, dtype) in header.items():
        if dtype not in _SAFETENSORS_DTYPES:
            raise RunError(f"{path}: {name} has dtype {dtype}, which mnistlab never writes")
        tensors[name] = torch.empty(shape, dtype=getattr(torch, _SAFETENSORS_DTYPES[dtype]), device="meta")
    return tensors


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
