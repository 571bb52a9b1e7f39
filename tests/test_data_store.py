"""Locating, downloading (with a fake network), loading and caching datasets."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import (
    dataset_names,
    default_cache_dir,
    download_dataset,
    get_dataset_spec,
    load_dataset,
    locate_dataset,
    shipped_data_dir,
    verify_dataset,
)
from mnistlab.data.registry import DatasetSpec
from mnistlab.errors import DataError

FASHION = "fashion-mnist"  # not shipped, so the later search steps are reachable


def test_registry() -> None:
    assert dataset_names() == ["mnist", "fashion-mnist", "kmnist"]
    assert get_dataset_spec("MNIST").mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert get_dataset_spec("Fashion-MNIST").class_names[0] == "T-shirt/top"
    for name in dataset_names():
        spec = get_dataset_spec(name)
        assert set(spec.md5) == set(spec.file_names()) and all(m.endswith("/") for m in spec.mirrors)
    with pytest.raises(
        DataError, match="unknown dataset 'digits'; known datasets: mnist, fashion-mnist, kmnist"
    ):
        get_dataset_spec("digits")


def test_default_cache_dir() -> None:
    assert default_cache_dir({"MNISTLAB_CACHE": "/a", "XDG_CACHE_HOME": "/b"}) == Path("/a")
    assert default_cache_dir({"XDG_CACHE_HOME": "/b"}) == Path("/b/mnistlab")
    assert default_cache_dir({}) == Path.home() / ".cache" / "mnistlab"


# ---- locate_dataset search order ----------------------------------------------------------------------


def test_data_dir_wins_and_accepts_unpacked_files(tmp_path: Path, synthetic_dataset: Callable) -> None:
    synthetic_dataset(tmp_path / "mine", gz=False)
    assert locate_dataset("mnist", tmp_path / "mine", env={}) == tmp_path / "mine"


def test_data_dir_missing_or_incomplete(tmp_path: Path, synthetic_dataset: Callable) -> None:
    with pytest.raises(DataError, match=r"nowhere: --data-dir does not exist"):
        locate_dataset("mnist", tmp_path / "nowhere", env={})
    synthetic_dataset(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"partial: --data-dir lacks mnist files: t10k-labels-idx1-ubyte\.gz"):
        locate_dataset("mnist", tmp_path / "partial", env={})


def test_env_var_subdir_then_shipped_then_cache(tmp_path: Path, synthetic_dataset: Callable) -> None:
    env = {"MNISTLAB_DATA": str(tmp_path / "data"), "MNISTLAB_CACHE": str(tmp_path / "cache")}
    synthetic_dataset(tmp_path / "cache" / FASHION)
    assert locate_dataset(FASHION, env=env, download=False) == tmp_path / "cache" / FASHION
    synthetic_dataset(tmp_path / "data")  # flat files directly in $MNISTLAB_DATA
    assert locate_dataset(FASHION, env=env, download=False) == tmp_path / "data"
    synthetic_dataset(tmp_path / "data" / FASHION)  # the <name>/ subdirectory is preferred
    assert locate_dataset(FASHION, env=env, download=False) == tmp_path / "data" / FASHION
    # MNIST: $MNISTLAB_DATA before the shipped copy, shipped copy before the cache
    assert locate_dataset("mnist", env=env, download=False) == tmp_path / "data"
    assert locate_dataset("mnist", env={"MNISTLAB_CACHE": env["MNISTLAB_CACHE"]}) == shipped_data_dir("mnist")


def test_env_dir_named_after_another_dataset_is_not_used(tmp_path: Path, synthetic_dataset: Callable) -> None:
    synthetic_dataset(tmp_path / "mnist")
    env = {"MNISTLAB_DATA": str(tmp_path / "mnist"), "MNISTLAB_CACHE": str(tmp_path / "cache")}
    with pytest.raises(DataError, match="dataset not found"):
        locate_dataset(FASHION, env=env, download=False)


def test_nothing_found_lists_every_place_and_the_fixes(tmp_path: Path) -> None:
    env = {"MNISTLAB_CACHE": str(tmp_path / "cache")}
    with pytest.raises(DataError) as info:
        locate_dataset(FASHION, env=env, opener=fake_opener({}), progress=False)
    message = str(info.value)
    for expected in (
        "$MNISTLAB_DATA: not set",
        f"user cache: {tmp_path / 'cache' / FASHION}",
        "fashion-mnist.s3-website",
        "--data-dir",
        "MNISTLAB_DATA",
        "connect to the internet",
    ):
        assert expected in message


# ---- download with a fake network ---------------------------------------------------------------------


def fake_spec(payloads: dict[str, bytes]) -> DatasetSpec:
    """An MNIST-like spec whose MD5s match ``payloads`` and whose two mirrors are fake URLs."""
    return DatasetSpec(
        name="fake",
        description="test",
        class_names=tuple("0123456789"),
        mirrors=("https://one.invalid/", "https://two.invalid/"),
        md5={name: hashlib.md5(data).hexdigest() for name, data in payloads.items()},
        license="test",
    )


def fake_opener(responses: dict[str, bytes], calls: list[str] | None = None) -> Callable:
    def opener(url: str, timeout: float) -> io.BytesIO:
        if calls is not None:
            calls.append(url)
        if url not in responses:
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(responses[url])

    return opener


def gz_payloads(tmp_path: Path, synthetic_dataset: Callable) -> dict[str, bytes]:
    synthetic_dataset(tmp_path / "src")
    return {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}


def test_download_falls_back_to_second_mirror_on_checksum_mismatch(
    tmp_path: Path, synthetic_dataset: Callable
) -> None:
    payloads = gz_payloads(tmp_path, synthetic_dataset)
    spec = fake_spec(payloads)
    responses = {f"https://one.invalid/{n}": b"corrupt" for n in payloads}
    responses |= {f"https://two.invalid/{n}": data for n, data in payloads.items()}
    calls: list[str] = []
    dest = download_dataset(spec, tmp_path / "dl", progress=False, opener=fake_opener(responses, calls))
    assert sorted(p.name for p in dest.iterdir()) == sorted(payloads)  # no temp files left
    assert all((dest / n).read_bytes() == data for n, data in payloads.items())
    assert len(calls) == 8  # each file: first mirror (bad checksum), then second
    # nothing is fetched again once all files are present
    download_dataset(spec, dest, progress=False, opener=fake_opener({}, calls))
    assert len(calls) == 8


def test_download_all_mirrors_fail_lists_each_url(tmp_path: Path, synthetic_dataset: Callable) -> None:
    payloads = gz_payloads(tmp_path, synthetic_dataset)
    responses = {f"https://one.invalid/{n}": b"corrupt" for n in payloads}
    with pytest.raises(DataError) as info:
        download_dataset(fake_spec(payloads), tmp_path / "dl", progress=False, opener=fake_opener(responses))
    message = str(info.value)
    assert "could not download fake file train-images-idx3-ubyte.gz" in message
    assert "https://one.invalid/train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert "https://two.invalid/train-images-idx3-ubyte.gz: Name or service not known" in message
    assert not [p for p in (tmp_path / "dl").iterdir()]  # no partial files


# ---- load_dataset -------------------------------------------------------------------------------------


def test_load_synthetic_and_count_mismatch(tmp_path: Path, synthetic_dataset: Callable) -> None:
    arrays = synthetic_dataset(tmp_path / "d", n_train=30, n_test=10)
    data = load_dataset("mnist", tmp_path / "d", cache=False)
    np.testing.assert_array_equal(data.train_images, arrays["train_images"])
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    assert data.source == tmp_path / "d" and data.name == "mnist"

    from mnistlab.data.idx import write_idx

    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte\.gz has 30 images but .*"
        r"train-labels-idx1-ubyte\.gz has 29 labels",
    ):
        load_dataset("mnist", tmp_path / "d", cache=False)


def test_decoded_cache_hit_and_invalidation(tmp_path: Path, synthetic_dataset: Callable) -> None:
    synthetic_dataset(tmp_path / "d", seed=1)
    cache = tmp_path / "cache"
    first = load_dataset("mnist", tmp_path / "d", cache_dir=cache)
    entries = list((cache / "decoded").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("mnist-")
    # A hit: poison the cached train images and see the poisoned values come back.
    poisoned = np.full_like(first.train_images, 7)
    np.save(entries[0] / "train_images.npy", poisoned)
    np.testing.assert_array_equal(
        load_dataset("mnist", tmp_path / "d", cache_dir=cache).train_images, poisoned
    )
    # Changing a source file (new bytes and mtime) gives a new key, a re-decode, and the stale entry goes.
    new = synthetic_dataset(tmp_path / "d", seed=2)
    stat = (tmp_path / "d" / "train-images-idx3-ubyte.gz").stat()
    os.utime(tmp_path / "d" / "train-images-idx3-ubyte.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = load_dataset("mnist", tmp_path / "d", cache_dir=cache)
    np.testing.assert_array_equal(again.train_images, new["train_images"])
    assert [e.name for e in (cache / "decoded").iterdir()] != [entries[0].name]
    assert len(list((cache / "decoded").iterdir())) == 1


def test_unwritable_cache_is_skipped(tmp_path: Path, synthetic_dataset: Callable) -> None:
    synthetic_dataset(tmp_path / "d")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    data = load_dataset("mnist", tmp_path / "d", cache_dir=blocker)  # mkdir under a file fails
    assert data.train_images.shape == (60, 28, 28)


def test_real_shipped_mnist(tmp_path: Path) -> None:
    data = load_dataset("mnist", cache_dir=tmp_path / "cache", download=False, progress=False)
    assert data.source == shipped_data_dir("mnist")
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28)
    assert data.train_labels.shape == (60000,) and data.test_labels.shape == (10000,)
    assert set(np.unique(data.train_labels)) == set(range(10)) and data.test_labels.max() == 9
    warm = load_dataset("mnist", cache_dir=tmp_path / "cache", download=False)
    np.testing.assert_array_equal(warm.test_images, data.test_images)
    results = verify_dataset("mnist")
    assert len(results) == 4 and all(ok for _, _, ok in results), results
    assert {md5 for _, md5, _ in results} == set(get_dataset_spec("mnist").raw_md5.values())


def test_verify_flags_a_changed_file(tmp_path: Path, synthetic_dataset: Callable) -> None:
    synthetic_dataset(tmp_path / "d")
    results = verify_dataset("mnist", tmp_path / "d")
    assert not any(ok for _, _, ok in results)
    with pytest.raises(DataError, match="checksum verification failed"):
        load_dataset("mnist", tmp_path / "d", verify=True, cache=False)
