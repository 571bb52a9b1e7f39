"""Model zoo: pure ``nn.Module`` classes that map images (N, 1, 28, 28) to logits (N, 10).

Models import nothing from training. Look them up by name with :func:`build_model`. The registry's functions
are torch-free to import; the model classes (and torch) load on first use, so that ``mnistlab --help`` can
list the model names without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnistlab.lazy import lazy_exports
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
    "MLP": "mlp",
    "FastCNN": "cnn",
    "PytorchExampleNet": "cnn",
    "Committee": "committee",
    "DeepCNN": "deep",
    "LeNet5": "lenet",
}


__getattr__ = lazy_exports(__name__, _CLASSES)


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
