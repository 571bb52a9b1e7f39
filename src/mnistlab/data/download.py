"""Downloading a registered dataset's files, verified by MD5, with mirror fallback.

Each file is streamed into a temp file in the destination directory and only renamed into place after its
MD5 matches the registry, so an interrupted or corrupted download never looks like a valid file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from mnistlab.data.registry import DatasetSpec
from mnistlab.errors import DataError
from mnistlab.fileio import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16  # 64 KiB per read: small enough for a smooth progress bar, large enough to be fast
Opener = Callable[..., Any]  # urllib.request.urlopen-compatible: opener(url, timeout=seconds) -> response


class _ChecksumMismatch(Exception):
    pass


def file_present(directory: Path, gz_name: str) -> Path | None:
    """The file for ``gz_name`` in ``directory``, gzipped or already unpacked (name without .gz), or None."""
    for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _content_length(response: Any) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None


def _stream(response: BinaryIO, out: BinaryIO, on_chunk: Callable[[int], None]) -> str:
    """Copy ``response`` to ``out`` chunk by chunk; return the MD5 hex digest of what was copied."""
    md5 = hashlib.md5(usedforsecurity=False)
    while chunk := response.read(CHUNK_BYTES):
        md5.update(chunk)
        out.write(chunk)
        on_chunk(len(chunk))
    return md5.hexdigest()


def _fetch(
    url: str,
    target: Path,
    expected_md5: str | None,
    *,
    timeout: float,
    opener: Opener,
    progress: Progress,
    total: int | None,
) -> None:
    """Download ``url`` to ``target`` atomically; raise on network errors or a checksum mismatch."""
    task = progress.add_task(url.rsplit("/", 1)[-1], total=total)
    try:
        with atomic_path(target) as tmp:
            with opener(url, timeout=timeout) as response, tmp.open("wb") as out:
                if total is None:
                    progress.update(task, total=_content_length(response))
                digest = _stream(response, out, lambda n: progress.advance(task, n))
            if expected_md5 is not None and digest != expected_md5:
                raise _ChecksumMismatch(f"checksum mismatch: MD5 {digest}, expected {expected_md5}")
    finally:
        progress.remove_task(task)


def _download_file(
    spec: DatasetSpec, gz_name: str, dest_dir: Path, *, timeout: float, opener: Opener, progress: Progress
) -> Path:
    """Try each mirror in turn; return the downloaded path or raise one DataError listing every failure."""
    target = dest_dir / gz_name
    failures: list[str] = []
    for mirror in spec.mirrors:
        url = mirror + gz_name
        try:
            _fetch(
                url,
                target,
                spec.md5.get(gz_name),
                timeout=timeout,
                opener=opener,
                progress=progress,
                total=spec.sizes.get(gz_name),
            )
            return target
        except (
            _ChecksumMismatch,
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            ValueError,
        ) as exc:
            reason = getattr(exc, "reason", None) or exc  # URLError wraps the socket error in .reason
            log.debug("download of %s failed: %s", url, reason)
            failures.append(f"  {url}: {reason}")
    raise DataError(
        f"{target}: could not download {spec.name} file {gz_name} from any mirror:\n" + "\n".join(failures)
    )


def download_dataset(
    spec: DatasetSpec,
    dest_dir: Path,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    opener: Opener = urllib.request.urlopen,
) -> Path:
    """Download the files of ``spec`` that ``dest_dir`` lacks; return ``dest_dir``.

    ``timeout`` is in seconds per network operation. ``opener`` is injectable so tests never touch the
    network. The progress bar is shown only when ``progress`` is true and stdout is a terminal.
    """
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest_dir}: cannot create download directory: {exc.strerror or exc}") from None
    missing = [name for name in spec.file_names() if file_present(dest_dir, name) is None]
    show = progress and sys.stdout.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, disable=not show, transient=True) as bar:
        for gz_name in missing:
            _download_file(spec, gz_name, dest_dir, timeout=timeout, opener=opener, progress=bar)
    return dest_dir
