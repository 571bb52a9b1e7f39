"""Reading and writing IDX files, the format MNIST is published in.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
the values in C order, big-endian. The published files are gzipped; we recognise gzip by its ``1f 8b`` magic
bytes rather than by the file name, because users rename and unpack files freely.

Every problem is raised as :class:`~mnistlab.errors.DataError` with the file name in the message.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from mnistlab.errors import DataError
from mnistlab.fileio import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
MAX_NDIM = 4  # MNIST-format data has 1 (labels) or 3 (images) dims; 4 leaves room for e.g. colour

# IDX type code -> big-endian numpy dtype (the format is always big-endian on disk).
IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType(
    {
        0x08: np.dtype(">u1"),
        0x09: np.dtype(">i1"),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)
UBYTE = 0x08


# ---- reading ------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip data ({exc}); delete the file and download it again") from None


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (on-disk dtype, shape, header length in bytes) after validating the magic number."""
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: not an IDX file (magic number starts {data[:2].hex()}, expected 0000); "
            "is it an image or an archive of another kind?"
        )
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX data type code 0x{type_code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{path}: unsupported number of dimensions {ndim} (expected 1 to {MAX_NDIM})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated header: {ndim} dims need {header_len} bytes, file has {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[type_code], shape, header_len


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a writable, native-endian array of the header's shape."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, header_len = _parse_header(path, data)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    present = len(data) - header_len
    if present < expected:
        raise DataError(
            f"{path}: truncated: header says {_shape_text(shape)} = {expected} data bytes, file has {present}"
        )
    if present > expected:
        raise DataError(
            f"{path}: {present - expected} trailing bytes: header says {_shape_text(shape)} = "
            f"{expected} data bytes, file has {present}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies: the result is writable (torch.from_numpy warns on read-only arrays) and native-endian.
    return values.astype(dtype.newbyteorder("="))


def _require(path: Path, array: np.ndarray, ndim: int, what: str) -> None:
    if array.dtype != np.uint8:
        raise DataError(f"{path}: {what} must be unsigned bytes (IDX type 0x08), got {array.dtype}")
    if array.ndim != ndim:
        raise DataError(
            f"{path}: {what} must have {ndim} dimension(s), got {array.ndim} ({_shape_text(array.shape)})"
        )


def read_images(path: str | Path) -> np.ndarray:
    """Images as uint8 (N, H, W), pixel values 0-255."""
    path = Path(path)
    images = read_idx(path)
    _require(path, images, 3, "an image file")
    return images


def read_labels(path: str | Path, num_classes: int) -> np.ndarray:
    """Labels as uint8 (N,), each in 0..num_classes-1."""
    path = Path(path)
    labels = read_idx(path)
    _require(path, labels, 1, "a label file")
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at index {i} is out of range for {num_classes} classes "
            f"({bad.size} bad labels in all)"
        )
    return labels


# ---- writing ------------------------------------------------------------------------------------------


def _type_code(array: np.ndarray) -> int:
    for code, dtype in IDX_DTYPES.items():
        if array.dtype.newbyteorder(">") == dtype:
            return code
    raise DataError(
        f"cannot store dtype {array.dtype} in IDX (supported: {[str(d) for d in IDX_DTYPES.values()]})"
    )


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of ``array`` (header + big-endian values)."""
    array = np.asarray(array)
    code = _type_code(array)
    if not 1 <= array.ndim <= MAX_NDIM:
        raise DataError(f"cannot store a {array.ndim}-dimensional array in IDX (1 to {MAX_NDIM} supported)")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzipped when ``path`` ends in ``.gz``; the file appears atomically.

    gzip gets mtime=0 and no file name so the same array always gives the same bytes (stable checksums).
    """
    path = Path(path)
    payload = idx_bytes(array)
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                    gz.write(payload)
            else:
                f.write(payload)
    except OSError as exc:
        raise DataError(f"{path}: cannot write: {exc.strerror or exc}") from None
