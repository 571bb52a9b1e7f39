"""mnistlab: build, train, study and use neural networks on MNIST-format data.

The top-level verbs (``train``, ``load_run``, ``recipe``) are imported lazily, so ``import mnistlab.data``
loads only the data layer and never the training code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {"Run", "TrainConfig", "load_run", "recipe", "train"}

if TYPE_CHECKING:
    from mnistlab.api import Run, TrainConfig, load_run, recipe, train


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("mnistlab.api"), name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


__all__ = ["Run", "TrainConfig", "__version__", "load_run", "recipe", "train"]
