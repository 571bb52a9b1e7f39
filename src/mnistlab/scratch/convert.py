"""The engine's weights under the names of the torch MLP's ``state_dict`` (and back), as NumPy arrays.

``mnistlab.models.MLP`` is ``net = Sequential(Flatten, Linear, ReLU, [Dropout], Linear, ...)``, so its k-th
Linear is module ``net.{1 + k * stride}``, stride 2 (Linear, ReLU) or 3 with dropout. With these names a
NumPy-trained network is written as a normal run folder (safetensors) and loaded by ``torch.from_numpy``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mnistlab.scratch.network import MLP


def linear_names(layers: int, dropout: bool = False) -> list[str]:
    """Module names of the torch MLP's Linear layers: ['net.1', 'net.3', 'net.5'] for two hidden layers."""
    stride = 3 if dropout else 2
    return [f"net.{1 + k * stride}" for k in range(layers)]


def to_state_dict(net: MLP, dropout: bool = False) -> dict[str, np.ndarray]:
    """{'net.1.weight': (out, in), 'net.1.bias': (out,), ...}: copies, ready for ``torch.from_numpy``.

    ``dropout``: whether the torch model it is meant for has Dropout modules (their positions shift the names).
    """
    names = linear_names(len(net.linears), dropout)
    state: dict[str, np.ndarray] = {}
    for name, layer in zip(names, net.linears, strict=True):
        state[f"{name}.weight"], state[f"{name}.bias"] = layer.weight.copy(), layer.bias.copy()
    return state


def load_state_dict(net: MLP, state: Mapping[str, np.ndarray], dropout: bool = False) -> None:
    """Copy weights named as the torch MLP names them into ``net`` (shapes must match; dtype is the net's)."""
    names = linear_names(len(net.linears), dropout)
    expected = {f"{n}.{kind}" for n in names for kind in ("weight", "bias")}
    if set(state) != expected:
        raise ValueError(f"state dict keys {sorted(state)} do not match this MLP's {sorted(expected)}")
    for name, layer in zip(names, net.linears, strict=True):
        for kind in ("weight", "bias"):
            target, value = getattr(layer, kind), np.asarray(state[f"{name}.{kind}"])
            if value.shape != target.shape:
                raise ValueError(f"{name}.{kind}: shape {value.shape}, expected {target.shape}")
            target[...] = value
