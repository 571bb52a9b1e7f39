"""The constructors behind the model registry's names (:mod:`mnistlab.models.registry`).

Each factory takes the generic knobs of :class:`mnistlab.config.ModelConfig` (``hidden``, ``dropout``,
``width``) and ignores the ones that do not apply, so the CLI can expose one set of flags for all models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from mnistlab.models.cnn import FastCNN, PytorchExampleNet
from mnistlab.models.deep import DeepCNN
from mnistlab.models.lenet import LeNet5
from mnistlab.models.mlp import MLP

Factory = Callable[[Sequence[int] | None, float | None, float], nn.Module]


def _scale(channels: Sequence[int], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in channels)


def mlp(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return MLP(hidden=_scale(hidden or (512, 256), width), dropout=0.2 if dropout is None else dropout)


def lenet5(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return LeNet5(channels=_scale((6, 16), width), dropout=dropout or 0.0)


def lenet_wide(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    # The lecture's variant: the same LeNet layout with many more filters per convolution layer.
    return LeNet5(channels=_scale((32, 64), width), dropout=dropout or 0.0)


def cnn(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return FastCNN(channels=_scale((16, 32, 64), width), dropout=dropout or 0.0)


def deep_cnn(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return DeepCNN(channels=_scale((16, 32, 64), width), dropout=dropout or 0.0)


def pytorch_example(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return PytorchExampleNet()
