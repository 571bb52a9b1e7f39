"""Names a package exports without importing their modules until first use (PEP 562 module ``__getattr__``).

``mnistlab --help`` lists dataset and model names from torch-free registries; the classes and loaders that need
NumPy or torch load only when a command first touches them (start-up: ``bench/startup.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, submodule_of: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name -> the attribute of ``package.<submodule_of[name]>``."""

    def __getattr__(name: str) -> Any:
        if name in submodule_of:
            return getattr(importlib.import_module(f"{package}.{submodule_of[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
