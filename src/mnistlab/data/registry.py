"""The datasets mnistlab knows by name: their files, checksums, download mirrors and licences.

All three share MNIST's layout (60,000 + 10,000 greyscale 28x28 images, 10 classes, four gzipped IDX files
with the same names), so the rest of the package treats them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mnistlab.errors import DataError

SPLITS = ("train", "test")

# The four file names every MNIST-format dataset uses; split -> (images, labels).
MNIST_FILES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
)


def _frozen(mapping: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, download, verify and describe one dataset."""

    name: str
    description: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]  # base URLs ending in "/"; a file's URL is mirror + file name
    md5: Mapping[str, str]  # gz file name -> MD5 of the .gz as served by the mirrors
    license: str  # licence and attribution, shown to users and shipped next to the data
    files: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MNIST_FILES)
    # gz file name -> MD5 of the *uncompressed* bytes; survives re-gzipping (our shipped copy is re-gzipped)
    raw_md5: Mapping[str, str] = field(default_factory=_frozen)
    sizes: Mapping[str, int] = field(default_factory=_frozen)  # gz file name -> bytes of the .gz download
    num_classes: int = 10
    image_shape: tuple[int, int] = (28, 28)  # (H, W) pixels
    num_train: int = 60_000
    num_test: int = 10_000

    def file_names(self) -> list[str]:
        """The four gz file names, train images first."""
        return [name for split in SPLITS for name in self.files[split]]


MNIST = DatasetSpec(
    name="mnist",
    description="Handwritten digits 0-9 (LeCun, Cortes, Burges)",
    class_names=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    md5=_frozen(
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        }
    ),
    raw_md5=_frozen(
        {
            "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        }
    ),
    sizes=_frozen(
        {
            "train-images-idx3-ubyte.gz": 9_912_422,
            "train-labels-idx1-ubyte.gz": 28_881,
            "t10k-images-idx3-ubyte.gz": 1_648_877,
            "t10k-labels-idx1-ubyte.gz": 4_542,
        }
    ),
    license=(
        "The MNIST database by Yann LeCun, Corinna Cortes and Christopher J.C. Burges is made available "
        "under the Creative Commons Attribution-Share Alike 3.0 license (CC BY-SA 3.0)."
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Zalando article images in 10 clothing classes (Xiao, Rasul, Vollgraf 2017)",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    # As published by torchvision (torchvision/datasets/mnist.py, class FashionMNIST).
    md5=_frozen(
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        }
    ),
    license=(
        "Fashion-MNIST by Zalando SE (Han Xiao, Kashif Rasul, Roland Vollgraf) is released under the MIT "
        "license. Cite: Xiao et al., 'Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
        "Algorithms', arXiv:1708.07747, 2017."
    ),
)

KMNIST = DatasetSpec(
    name="kmnist",
    description="Kuzushiji-MNIST: 10 classes of cursive Japanese hiragana (ROIS-DS CODH)",
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    # As published by torchvision (torchvision/datasets/mnist.py, class KMNIST).
    md5=_frozen(
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        }
    ),
    license=(
        "Kuzushiji-MNIST by ROIS-DS Center for Open Data in the Humanities (CODH), based on the Kuzushiji "
        "dataset created by NIJL and others, is licensed under CC BY-SA 4.0. Cite: Clanuwat et al., 'Deep "
        "Learning for Classical Japanese Literature', arXiv:1812.01718, 2018."
    ),
)

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)})


def dataset_names() -> list[str]:
    """Registered dataset names, in registry order ("mnist" first)."""
    return list(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec registered under ``name`` (case-insensitive)."""
    spec = DATASETS.get(name.strip().lower())
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return spec
