"""Data: IDX files, the dataset registry, download and cache, preprocessing and in-memory batching.

Imports nothing from training, models or the CLI. The names below load their submodule on first use, so that
``mnistlab.data.registry`` (the dataset names, for ``--help``) imports neither NumPy nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnistlab.lazy import lazy_exports

if TYPE_CHECKING:
    from mnistlab.data.batching import TensorSplit, split_train_val
    from mnistlab.data.download import download_dataset
    from mnistlab.data.idx import read_idx, read_images, read_labels, write_idx
    from mnistlab.data.preprocessing import Preprocessor
    from mnistlab.data.registry import DATASETS, DatasetSpec, dataset_names, get_dataset_spec
    from mnistlab.data.store import (
        MnistArrays,
        default_cache_dir,
        load_dataset,
        locate_dataset,
        shipped_data_dir,
        verify_dataset,
    )

_SUBMODULE = {
    "TensorSplit": "batching",
    "split_train_val": "batching",
    "download_dataset": "download",
    "read_idx": "idx",
    "read_images": "idx",
    "read_labels": "idx",
    "write_idx": "idx",
    "Preprocessor": "preprocessing",
    "DATASETS": "registry",
    "DatasetSpec": "registry",
    "dataset_names": "registry",
    "get_dataset_spec": "registry",
    "MnistArrays": "store",
    "default_cache_dir": "store",
    "load_dataset": "store",
    "locate_dataset": "store",
    "shipped_data_dir": "store",
    "verify_dataset": "store",
}


__getattr__ = lazy_exports(__name__, _SUBMODULE)


__all__ = [
    "DATASETS",
    "DatasetSpec",
    "MnistArrays",
    "Preprocessor",
    "TensorSplit",
    "dataset_names",
    "default_cache_dir",
    "download_dataset",
    "get_dataset_spec",
    "load_dataset",
    "locate_dataset",
    "read_idx",
    "read_images",
    "read_labels",
    "shipped_data_dir",
    "split_train_val",
    "verify_dataset",
    "write_idx",
]
