"""Data: IDX files, the dataset registry, download and cache, preprocessing and in-memory batching.

Imports nothing from training, models or the CLI.
"""

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
