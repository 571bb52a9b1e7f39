"""IDX reading and writing, on synthetic bytes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistlab.data.idx import idx_bytes, read_idx, read_images, read_labels, write_idx
from mnistlab.errors import DataError


def idx_header(type_code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_round_trip_plain_and_gz(tmp_path: Path, name: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    path = tmp_path / name
    write_idx(path, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_images(path)
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, images)
    assert out.flags.writeable  # torch.from_numpy warns on read-only arrays
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file behind


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    path = write_bytes(tmp_path / "labels.idx", gzip.compress(idx_bytes(labels)))  # gzipped, no .gz name
    np.testing.assert_array_equal(read_labels(path, 10), labels)


def test_gz_output_is_reproducible(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", ">f8"])
def test_round_trip_other_dtypes(tmp_path: Path, dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != "u1" else np.arange(24, dtype="u1")
    write_idx(tmp_path / "x.idx", array)
    out = read_idx(tmp_path / "x.idx")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    gz=st.booleans(),
)
def test_property_write_read_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = tmp_path / ("p.idx.gz" if gz else "p.idx")
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


# ---- corruption: every failure is a DataError naming the file ---------------------------------------------

GOOD_IMAGES = idx_header(0x08, (2, 3, 3)) + bytes(18)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00", "too short"),
        (b"\x12\x34\x08\x03" + GOOD_IMAGES[4:], "not an IDX file"),
        (bytes([0, 0, 0x07, 3]) + GOOD_IMAGES[4:], "unknown IDX data type code 0x07"),
        (bytes([0, 0, 0x08, 0]), "unsupported number of dimensions 0"),
        (bytes([0, 0, 0x08, 5]) + bytes(40), "unsupported number of dimensions 5"),
        (bytes([0, 0, 0x08, 3]) + bytes(6), "truncated header"),
        (GOOD_IMAGES[:-5], "truncated: header says 2x3x3 = 18 data bytes, file has 13"),
        (GOOD_IMAGES + b"xyz", "3 trailing bytes"),
        (gzip.compress(GOOD_IMAGES)[:-12], "corrupt gzip"),
        (b"\x1f\x8b" + b"garbage-not-deflate", "corrupt gzip"),
    ],
)
def test_corrupt_files_raise_data_error_naming_the_file(tmp_path: Path, data: bytes, problem: str) -> None:
    path = write_bytes(tmp_path / "train-images-idx3-ubyte.gz", data)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz") as info:
        read_images(path)
    assert problem in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz: no such file"):
        read_idx(tmp_path / "nope.gz")


def test_images_need_three_dims_and_ubyte(tmp_path: Path) -> None:
    write_idx(tmp_path / "flat.idx", np.zeros((4, 784), dtype=np.uint8))
    with pytest.raises(DataError, match=r"flat\.idx: an image file must have 3 dimension"):
        read_images(tmp_path / "flat.idx")
    write_idx(tmp_path / "float.idx", np.zeros((4, 28, 28), dtype=np.float32))
    with pytest.raises(DataError, match=r"float\.idx: .*unsigned bytes"):
        read_images(tmp_path / "float.idx")


def test_labels_need_one_dim(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels.idx", np.zeros((4, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels\.idx: a label file must have 1 dimension"):
        read_labels(tmp_path / "labels.idx", 10)


def test_labels_out_of_range_names_value_and_index(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels.idx", np.array([0, 9, 3, 12, 200], dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels\.idx: label 12 at index 3 is out of range for 10 classes"):
        read_labels(tmp_path / "labels.idx", 10)
