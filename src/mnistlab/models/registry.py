"""Name -> constructor registry, plus parameter and FLOP counting.

The registry is a table of names and ``"module:function"`` strings, so listing the names (``--help``, the
``--model`` choices) imports neither torch nor any model; :func:`build_model` imports the constructor on use.
The constructors are in :mod:`mnistlab.models.factories`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from mnistlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from mnistlab.config import ModelConfig

MODELS: MappingProxyType[str, str] = MappingProxyType(
    {
        "mlp": "mnistlab.models.factories:mlp",
        "lenet5": "mnistlab.models.factories:lenet5",
        "lenet-wide": "mnistlab.models.factories:lenet_wide",
        "cnn": "mnistlab.models.factories:cnn",
        "deep-cnn": "mnistlab.models.factories:deep_cnn",
        "pytorch-example": "mnistlab.models.factories:pytorch_example",
    }
)


def model_names() -> list[str]:
    return list(MODELS)


def build_model(
    name: str, *, hidden: Sequence[int] | None = None, dropout: float | None = None, width: float = 1.0
) -> nn.Module:
    """Build a freshly initialised model by registry name."""
    try:
        module, _, function = MODELS[name].partition(":")
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    import torch

    if torch.get_default_device().type != "meta":  # on meta: shapes only, nothing to allocate
        check_fits_in_memory(name, hidden=hidden, dropout=dropout, width=width)
    return getattr(importlib.import_module(module), function)(hidden, dropout, width)


def check_fits_in_memory(
    name: str, *, hidden: Sequence[int] | None = None, dropout: float | None = None, width: float = 1.0
) -> None:
    """A model whose float32 weights alone exceed the machine's memory is a ConfigError, found on the meta
    device (shapes, no memory) before anything is allocated. A config's ranges let a model be very wide
    (``hidden`` up to 10**7 units a layer), and a config.json may be edited: without this, such a model died
    in torch's allocator with a traceback, or was killed by the kernel as it filled its pages."""
    import torch

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
    """:func:`build_model` with the fields of a :class:`~mnistlab.config.ModelConfig`; with ``input_width``,
    wrapped in its width normalisation (:class:`~mnistlab.models.width.WidthNormalized`)."""
    net = build_model(config.name, hidden=config.hidden, dropout=config.dropout, width=config.width)
    if config.input_width is None:
        return net
    from mnistlab.models.width import WidthNormalized

    return WidthNormalized(net, config.input_width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Forward-pass FLOPs for one image, as torch's FlopCounterMode counts them (a multiply-add is 2 FLOPs).

    It counts matrix multiplies and convolutions (>95 % of the work here) and ignores BatchNorm, ReLU and
    pooling. A training step costs about 3x this (forward, plus two products of the same size backward).
    """
    import torch
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
