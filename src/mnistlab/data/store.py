"""Finding a dataset on disk (or downloading it), loading it into arrays, and caching the decoded arrays.

Search order of :func:`locate_dataset`:

1. ``data_dir`` (the ``--data-dir`` flag), when given: it must hold the files, nothing else is tried;
2. ``$MNISTLAB_DATA`` (its ``<name>/`` subdirectory, or the directory itself);
3. the copy shipped inside the package (MNIST only);
4. the user cache, ``<cache>/<name>/``;
5. a download into the user cache (when ``download`` is true).

Decoding 47 MB of gzipped IDX takes a few hundred ms; the decoded-array cache (``.npy`` files keyed by the
source files' path, size and mtime) brings a repeat load down to tens of ms.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.download import Opener, download_dataset, file_present
from mnistlab.data.idx import GZIP_MAGIC, read_images, read_labels
from mnistlab.data.registry import SPLITS, DatasetSpec, dataset_names, get_dataset_spec
from mnistlab.errors import DataError

log = logging.getLogger(__name__)

ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
CACHE_FORMAT = "1"  # bump when the cached layout changes, so old caches are ignored
KEY_CHARS = 16  # hex characters of the cache key


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays elementwise is never what == should mean here
class MnistArrays:
    train_images: np.ndarray  # uint8 (60000, 28, 28), pixels 0-255
    train_labels: np.ndarray  # uint8 (60000,)
    test_images: np.ndarray  # uint8 (10000, 28, 28)
    test_labels: np.ndarray  # uint8 (10000,)
    name: str
    source: Path  # the directory the IDX files were read from


# ---- where things live ---------------------------------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$MNISTLAB_CACHE``, else ``$XDG_CACHE_HOME/mnistlab``, else ``~/.cache/mnistlab``."""
    env = os.environ if env is None else env
    if env.get("MNISTLAB_CACHE"):
        return Path(env["MNISTLAB_CACHE"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "mnistlab"
    return Path.home() / ".cache" / "mnistlab"


def shipped_data_dir(name: str) -> Path | None:
    """The copy installed with the package (``mnistlab/data/files/<name>/``), or None if not shipped."""
    directory = Path(__file__).parent / "files" / get_dataset_spec(name).name
    return directory if directory.is_dir() else None


def _missing_files(spec: DatasetSpec, directory: Path) -> list[str]:
    return [n for n in spec.file_names() if file_present(directory, n) is None]


def _has_dataset(spec: DatasetSpec, directory: Path) -> bool:
    return directory.is_dir() and not _missing_files(spec, directory)


def _from_data_dir(spec: DatasetSpec, data_dir: Path) -> Path:
    """``--data-dir`` must hold the four files (or a ``<name>/`` subdirectory that does)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: --data-dir does not exist (or is not a directory)")
    for candidate in (data_dir, data_dir / spec.name):
        if _has_dataset(spec, candidate):
            return candidate
    missing = ", ".join(_missing_files(spec, data_dir))
    raise DataError(f"{data_dir}: --data-dir lacks {spec.name} files: {missing} (.gz or unpacked)")


def _env_candidates(spec: DatasetSpec, env_dir: Path) -> list[Path]:
    """``<dir>/<name>/`` first; ``<dir>`` itself unless it is named after a *different* dataset.

    All MNIST-format datasets use the same four file names, so ``MNISTLAB_DATA=~/data/mnist`` must not be
    taken for Fashion-MNIST; the directory name is the only cheap hint we have.
    """
    other_names = {n for n in dataset_names() if n != spec.name}
    candidates = [env_dir / spec.name]
    if env_dir.name.lower() not in other_names:
        candidates.append(env_dir)
    return candidates


def _search_places(spec: DatasetSpec, env: Mapping[str, str]) -> list[tuple[str, Path]]:
    places: list[tuple[str, Path]] = []
    if env.get("MNISTLAB_DATA"):
        env_dir = Path(env["MNISTLAB_DATA"]).expanduser()
        places += [("$MNISTLAB_DATA", p) for p in _env_candidates(spec, env_dir)]
    shipped = shipped_data_dir(spec.name)
    if shipped is not None:
        places.append(("shipped copy", shipped))
    places.append(("user cache", default_cache_dir(env) / spec.name))
    return places


def _not_found_message(spec: DatasetSpec, places: list[tuple[str, Path]], download_error: str | None) -> str:
    searched = "\n".join(f"  {label}: {path}" for label, path in places)
    if not any(label == "$MNISTLAB_DATA" for label, _ in places):
        searched += "\n  $MNISTLAB_DATA: not set"
    tail = f"download failed:\n{download_error}" if download_error else "download disabled (--no-download)"
    return (
        f"{spec.name}: dataset not found. Searched:\n{searched}\n{tail}\n"
        f"Fix: pass --data-dir DIR holding {', '.join(spec.file_names())} (.gz or unpacked), "
        "set MNISTLAB_DATA to such a directory, or connect to the internet so it can be downloaded."
    )


def locate_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    env: Mapping[str, str] | None = None,
    progress: bool = True,
    opener: Opener = urllib.request.urlopen,
) -> Path:
    """The directory holding ``name``'s four files (see the module docstring for the search order)."""
    spec = get_dataset_spec(name)
    if data_dir is not None:
        return _from_data_dir(spec, Path(data_dir).expanduser())
    env = os.environ if env is None else env
    places = _search_places(spec, env)
    for _label, directory in places:
        if _has_dataset(spec, directory):
            return directory
    if not download:
        raise DataError(_not_found_message(spec, places, None))
    try:
        return download_dataset(spec, default_cache_dir(env) / spec.name, progress=progress, opener=opener)
    except DataError as exc:
        raise DataError(_not_found_message(spec, places, str(exc))) from None


def dataset_files(spec: DatasetSpec, directory: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (images path, labels path) inside ``directory`` (gz or unpacked, whichever exists)."""
    out: dict[str, tuple[Path, Path]] = {}
    for split in SPLITS:
        images, labels = (file_present(directory, n) for n in spec.files[split])
        if images is None or labels is None:
            raise DataError(f"{directory}: {spec.name} {split} files missing")
        out[split] = (images, labels)
    return out


# ---- decoding ------------------------------------------------------------------------------------------


def _read_split(spec: DatasetSpec, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_images(images_path)  # uint8 (N, H, W)
    labels = read_labels(labels_path, spec.num_classes)  # uint8 (N,)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels"
        )
    if images.shape[1:] != spec.image_shape:
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, {spec.name} expects "
            f"{spec.image_shape[0]}x{spec.image_shape[1]}"
        )
    return images, labels


def _decode(spec: DatasetSpec, files: dict[str, tuple[Path, Path]]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _read_split(spec, *files[split])
    return arrays


# ---- decoded-array cache ---------------------------------------------------------------------------------


def _cache_key(source: Path, files: dict[str, tuple[Path, Path]]) -> str:
    """Changes whenever a source file is replaced, resized or touched (mtime in ns)."""
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{source.resolve()}".encode())
    for split in SPLITS:
        for path in files[split]:
            st = path.stat()
            h.update(f"\0{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:KEY_CHARS]


def _load_cached(entry: Path, spec: DatasetSpec) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unreadable (a broken cache only costs a re-decode)."""
    if not entry.is_dir():
        return None
    try:
        arrays = {n: np.load(entry / f"{n}.npy", allow_pickle=False) for n in ARRAY_NAMES}
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        log.debug("ignoring unreadable decoded cache %s: %s", entry, exc)
        return None
    ok = all(arrays[n].dtype == np.uint8 for n in ARRAY_NAMES) and all(
        arrays[f"{s}_images"].shape[1:] == spec.image_shape
        and arrays[f"{s}_images"].shape[0] == arrays[f"{s}_labels"].shape[0]
        for s in SPLITS
    )
    return arrays if ok else None


def _store_cached(entry: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays into a temp dir, then rename it to ``entry``; skip quietly if that fails."""
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
        for n in ARRAY_NAMES:
            np.save(tmp / f"{n}.npy", arrays[n], allow_pickle=False)
        os.replace(tmp, entry)  # atomic; fails if another process got there first, which is fine
        tmp = None
        _prune_stale(entry)
    except OSError as exc:
        log.debug("not caching decoded arrays in %s: %s", entry, exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _prune_stale(entry: Path) -> None:
    """Remove every other cache entry of the same dataset, stale or not.

    The key covers the source folder as well as the files, so this also deletes the cache of the same dataset
    read from another folder (e.g. another --data-dir): one decoded copy per dataset is kept, the newest.
    Loading from the other folder again decodes its files again (a few hundred ms) and takes the cache back.
    """
    dataset = entry.name[: -(KEY_CHARS + 1)]
    pattern = re.compile(re.escape(dataset) + rf"-[0-9a-f]{{{KEY_CHARS}}}")
    for other in entry.parent.iterdir():
        if other != entry and pattern.fullmatch(other.name):
            shutil.rmtree(other, ignore_errors=True)


# ---- public entry points ---------------------------------------------------------------------------------


def load_dataset(
    name: str = "mnist",
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    cache: bool = True,
    cache_dir: Path | None = None,
    verify: bool = False,
    progress: bool = True,
) -> MnistArrays:
    """Locate, read and check a dataset; reuse decoded arrays from the cache when the files are unchanged."""
    spec = get_dataset_spec(name)
    source = locate_dataset(spec.name, data_dir, download=download, progress=progress)
    if verify:
        _require_verified(spec.name, source)
    files = dataset_files(spec, source)
    arrays: dict[str, np.ndarray] | None = None
    entry: Path | None = None
    if cache:
        entry = (
            Path(cache_dir or default_cache_dir()) / "decoded" / f"{spec.name}-{_cache_key(source, files)}"
        )
        arrays = _load_cached(entry, spec)
    if arrays is None:
        arrays = _decode(spec, files)
        if entry is not None:
            _store_cached(entry, arrays)
    return MnistArrays(**arrays, name=spec.name, source=source)


def _md5_of_contents(path: Path, raw: bool) -> str:
    """MD5 of the file's bytes, or of its uncompressed bytes when ``raw`` (gunzipping if needed)."""
    data = path.read_bytes()
    if raw and data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify_dataset(name: str, data_dir: str | Path | None = None) -> list[tuple[str, str, bool]]:
    """(file path, MD5, matches) for each of the four files; nothing is downloaded.

    The MD5 is of the uncompressed bytes when the registry knows those (re-gzipping changes the .gz bytes but
    not the contents). Otherwise it is of the file itself, compared with the published .gz MD5; an unpacked
    file with no known uncompressed MD5 cannot be checked and is reported as not ok.
    """
    spec = get_dataset_spec(name)
    source = locate_dataset(spec.name, data_dir, download=False)
    results = []
    for gz_name in spec.file_names():
        path = file_present(source, gz_name)
        assert path is not None  # locate_dataset guarantees all four files
        if gz_name in spec.raw_md5:
            digest, expected = _md5_of_contents(path, raw=True), spec.raw_md5[gz_name]
        else:
            digest = _md5_of_contents(path, raw=False)
            expected = spec.md5.get(gz_name) if path.name == gz_name else None
        results.append((str(path), digest, digest == expected))
    return results


def _require_verified(name: str, source: Path) -> None:
    bad = [f"{path} (MD5 {digest})" for path, digest, ok in verify_dataset(name, source) if not ok]
    if bad:
        raise DataError(f"{name}: checksum verification failed for: {', '.join(bad)}")
