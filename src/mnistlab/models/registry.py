"""Name -> constructor registry, plus parameter and FLOP counting.

Each factory takes the generic knobs of :class:`mnistlab.config.ModelConfig` (``hidden``, ``dropout``,
``width``) and ignores the ones that do not apply, so the CLI can expose one set of flags for all models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from torch import nn

from mnistlab.errors import ConfigError
from mnistlab.models.cnn import FastCNN, PytorchExampleNet
from mnistlab.models.deep import DeepCNN
from mnistlab.models.lenet import LeNet5
from mnistlab.models.mlp import MLP

if TYPE_CHECKING:
    from mnistlab.config import ModelConfig

Factory = Callable[[Sequence[int] | None, float | None, float], nn.Module]


def _scale(channels: Sequence[int], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in channels)


def _mlp(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return MLP(hidden=_scale(hidden or (512, 256), width), dropout=0.2 if dropout is None else dropout)


def _lenet5(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return LeNet5(channels=_scale((6, 16), width), dropout=dropout or 0.0)


def _lenet_wide(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    # The lecture's variant: the same LeNet layout with many more filters per convolution layer.
    return LeNet5(channels=_scale((32, 64), width), dropout=dropout or 0.0)


def _cnn(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return FastCNN(channels=_scale((16, 32, 64), width), dropout=dropout or 0.0)


def _deep_cnn(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return DeepCNN(channels=_scale((16, 32, 64), width), dropout=dropout or 0.0)


def _pytorch_example(hidden: Sequence[int] | None, dropout: float | None, width: float) -> nn.Module:
    return PytorchExampleNet()


MODELS: MappingProxyType[str, Factory] = MappingProxyType(
    {
        "mlp": _mlp,
        "lenet5": _lenet5,
        "lenet-wide": _lenet_wide,
        "cnn": _cnn,
        "deep-cnn": _deep_cnn,
        "pytorch-example": _pytorch_example,
    }
)


def model_names() -> list[str]:
    return list(MODELS)


def build_model(
    name: str, *, hidden: Sequence[int] | None = None, dropout: float | None = None, width: float = 1.0
) -> nn.Module:
    """Build a freshly initialised model by registry name."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    if torch.get_default_device().type != "meta":  # on meta: shapes only, nothing to allocate
        check_fits_in_memory(name, hidden=hidden, dropout=dropout, width=width)
    return factory(hidden, dropout, width)


def check_fits_in_memory(
    name: str, *, hidden: Sequence[int] | None = None, dropout: float | None = None, width: float = 1.0
) -> None:
    """A model whose float32 weights alone exceed the machine's memory is a ConfigError, found on the meta
    device (shapes, no memory) before anything is allocated. A config's ranges let a model be very wide
    (``hidden`` up to 10**7 units a layer), and a config.json may be edited: without this, such a model died
    in torch's allocator with a traceback, or was killed by the kernel as it filled its pages."""
    memory = _physical_memory()
    if memory is None:
        return
    with torch.device("meta"):
        weights = count_parameters(build_model(name, hidden=hidden, dropout=dropout, width=width))
    if weights * 4 > memory:  # bytes of float32 weights, before gradients and optimiser state
        knobs = f"width {width:g}" + (f", hidden {list(hidden)}" if hidden else "")
        raise ConfigError(
            f"model {name} ({knobs}) has {weights:,} parameters ({weights * 4 / 2**30:,.1f} GiB of float32 "
            f"weights), more than this machine's {memory / 2**30:.1f} GiB of memory"
        )


def _physical_memory() -> int | None:
    """Bytes of RAM (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def model_from_config(config: ModelConfig) -> nn.Module:
    """:func:`build_model` with the fields of a :class:`~mnistlab.config.ModelConfig`."""
    return build_model(config.name, hidden=config.hidden, dropout=config.dropout, width=config.width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Forward-pass FLOPs for one image, as torch's FlopCounterMode counts them (a multiply-add is 2 FLOPs).

    It counts matrix multiplies and convolutions (>95 % of the work here) and ignores BatchNorm, ReLU and
    pooling. A training step costs about 3x this (forward, plus two products of the same size backward).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros((1, *image_shape), device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
