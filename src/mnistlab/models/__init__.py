"""Model zoo: pure ``nn.Module`` classes that map images (N, 1, 28, 28) to logits (N, 10).

Models import nothing from training. Look them up by name with :func:`build_model`. The registry's functions
are torch-free to import; the model classes (and torch) load on first use, so that ``mnistlab --help`` can
list the model names without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mnistlab.models.registry import (
    build_model,
    check_fits_in_memory,
    count_parameters,
    flops_per_image,
    model_from_config,
    model_names,
)

if TYPE_CHECKING:
    from mnistlab.models.cnn import FastCNN, PytorchExampleNet
    from mnistlab.models.committee import Committee
    from mnistlab.models.deep import DeepCNN
    from mnistlab.models.lenet import LeNet5
    from mnistlab.models.mlp import MLP

_CLASSES = {
    "MLP": "mnistlab.models.mlp",
    "FastCNN": "mnistlab.models.cnn",
    "PytorchExampleNet": "mnistlab.models.cnn",
    "Committee": "mnistlab.models.committee",
    "DeepCNN": "mnistlab.models.deep",
    "LeNet5": "mnistlab.models.lenet",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'mnistlab.models' has no attribute {name!r}")


__all__ = [
    "MLP",
    "Committee",
    "DeepCNN",
    "FastCNN",
    "LeNet5",
    "PytorchExampleNet",
    "build_model",
    "check_fits_in_memory",
    "count_parameters",
    "flops_per_image",
    "model_from_config",
    "model_names",
]
