"""Model zoo: pure ``nn.Module`` classes that map images (N, 1, 28, 28) to logits (N, 10).

Models import nothing from training. Look them up by name with :func:`build_model`.
"""

from mnistlab.models.cnn import FastCNN, PytorchExampleNet
from mnistlab.models.committee import Committee
from mnistlab.models.deep import DeepCNN
from mnistlab.models.lenet import LeNet5
from mnistlab.models.mlp import MLP
from mnistlab.models.registry import (
    build_model,
    check_fits_in_memory,
    count_parameters,
    flops_per_image,
    model_from_config,
    model_names,
)

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
