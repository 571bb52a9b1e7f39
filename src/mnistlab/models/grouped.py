"""N networks of one architecture stacked into one grouped network, to train N committee members at once.

A small CNN leaves a GPU launch-bound: each layer is a kernel launch whatever its size. Stacking N members makes
each layer one launch for all of them, and keeps every member's computation separate:

- ``Conv2d(c_in, c_out, groups=g)`` becomes ``Conv2d(N c_in, N c_out, groups=N g)``: member n owns channels
  [n c, (n + 1) c) of every activation, and a grouped convolution never mixes groups.
- ``BatchNorm2d(c)`` becomes ``BatchNorm2d(N c)``: statistics are per channel, hence per member, over that
  member's own batch.
- ``Flatten`` turns (B, N c, h, w) into (N, B, c h w), each member's features in its own flatten order, and
  ``Linear`` becomes a batched matrix product with weights (N, out, in).
- ReLU, max-pooling and dropout act elementwise or per channel and are used as they are.

Input: (B, N, 28, 28), member n's images in channel n (each member has its own batch). Output: logits
(N, B, 10). The sum of the members' batch-mean losses gives each member exactly the gradient of its own loss,
and elementwise optimisers (SGD with momentum or Nesterov, weight decay, Adam) update each member as they
would alone, so the members come out as if trained one after another, to float rounding.

:meth:`GroupedNetwork.tensor_pairs` says which slice of which grouped tensor is which member's parameter or
buffer, so weights and optimiser state move between the grouped network and the members' own models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnistlab.errors import ConfigError
from mnistlab.models.width import WidthNormalized, normalize_width

Join = str  # "cat" (along dim 0, channels), "stack" (a new dim 0, one row per member) or "same" (shared)
STATELESS = (nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Identity)


def leaf_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers (leaf modules) in registration order, which for mnistlab's models is forward order."""
    return [m for m in model.modules() if not list(m.children())]


class MemberFlatten(nn.Module):
    """(B, N c, h, w) -> (N, B, c h w): each member's features, flattened as its own Flatten would."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.count, -1).transpose(0, 1)


class GroupedLinear(nn.Module):
    """N linear layers as one batched product: x (N, B, in) -> (N, B, out)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # (N, out, in)
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))  # (N, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _grouped_conv(layers: Sequence[nn.Conv2d]) -> nn.Conv2d:
    c, n = layers[0], len(layers)
    conv = nn.Conv2d(
        n * c.in_channels,
        n * c.out_channels,
        c.kernel_size,
        stride=c.stride,
        padding=c.padding,
        dilation=c.dilation,
        groups=n * c.groups,
        bias=c.bias is not None,
        padding_mode=c.padding_mode,
    )
    return conv.to(c.weight.device, c.weight.dtype)


def _grouped_batchnorm(layers: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = layers[0]
    norm = nn.BatchNorm2d(len(layers) * b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats)
    like = b.running_mean if b.running_mean is not None else b.weight  # device and dtype of the members'
    return norm.to(like.device, like.dtype)


def group_layer(layers: Sequence[nn.Module]) -> tuple[nn.Module, Join]:
    """One grouped layer for the members' layers at the same position, and how its tensors join theirs."""
    first = layers[0]
    if any(type(layer) is not type(first) for layer in layers):
        raise ConfigError("committee members to be grouped must share one architecture")
    if isinstance(first, nn.Conv2d):
        return _grouped_conv(layers), "cat"
    if isinstance(first, nn.BatchNorm2d):
        return _grouped_batchnorm(layers), "cat"
    if isinstance(first, nn.Linear):
        return GroupedLinear(layers), "stack"
    if isinstance(first, nn.Flatten):
        return MemberFlatten(len(layers)), "same"
    if isinstance(first, STATELESS):
        return first, "same"
    raise ConfigError(f"cannot train members at once: no grouped form of {type(first).__name__}")


class GroupedNetwork(nn.Module):
    """The members, stacked: (B, N, 28, 28) -> logits (N, B, 10). Built from (and a copy of) their weights."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        columns = [leaf_layers(m) for m in members]
        if len({len(c) for c in columns}) != 1:
            raise ConfigError("committee members to be grouped must share one architecture")
        first = members[0].net if isinstance(members[0], WidthNormalized) else members[0]
        check_forward_order(first, columns[0])  # the layers in turn are the network after any input variant
        grouped = [group_layer(layers) for layers in zip(*columns, strict=True)]
        self.layers = nn.ModuleList(layer for layer, _ in grouped)
        self.joins = [join for _, join in grouped]
        self.count = len(members)
        # Each member's input variant (its WidthNormalized wrapper holds no weights, so no layer above has it)
        self.input_widths = [m.width if isinstance(m, WidthNormalized) else None for m in members]
        self.load_members(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Member n's images, channel n of x (B, N, 28, 28), as it alone sees them: width-normalised in eval
        # mode; in training its trainer normalised them before the distortions (models/width.py)
        if any(self.input_widths) and not self.training:
            x = torch.cat(
                [
                    x[:, n : n + 1] if w is None else normalize_width(x[:, n : n + 1], float(w))
                    for n, w in enumerate(self.input_widths)
                ],
                dim=1,
            )
        for layer in self.layers:
            x = layer(x)
        return x

    def tensor_pairs(
        self, members: Sequence[nn.Module]
    ) -> list[tuple[torch.Tensor, list[torch.Tensor], Join]]:
        """(grouped tensor, the members' tensors it holds, how they join), for every parameter and buffer."""
        pairs = []
        columns = [leaf_layers(m) for m in members]
        for layer, join, member_layers in zip(
            self.layers, self.joins, zip(*columns, strict=True), strict=True
        ):
            named = [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]
            for name, tensor in named:
                mode = "same" if name == "num_batches_tracked" else join
                pairs.append((tensor, [getattr(m, name) for m in member_layers], mode))
        return pairs

    @torch.no_grad()
    def load_members(self, members: Sequence[nn.Module]) -> None:
        """Copy the members' weights and buffers into the grouped network."""
        for grouped, tensors, join in self.tensor_pairs(members):
            grouped.copy_(join_tensors(tensors, join))

    @torch.no_grad()
    def store_members(self, members: Sequence[nn.Module]) -> None:
        """Copy the grouped weights and buffers back into the members' own models."""
        for grouped, tensors, join in self.tensor_pairs(members):
            for tensor, piece in zip(tensors, split_tensor(grouped, join, len(tensors)), strict=True):
                tensor.copy_(piece)


@torch.no_grad()
def check_forward_order(model: nn.Module, layers: Sequence[nn.Module]) -> None:
    """A ConfigError unless applying ``layers`` one after another is ``model``'s forward (on a test input)."""
    weight = next(model.parameters())
    x = torch.linspace(-1, 1, 2 * 28 * 28, device=weight.device, dtype=weight.dtype).reshape(2, 1, 28, 28)
    was_training = model.training
    model.eval()
    try:
        expected, got = model(x), x
        for layer in layers:
            got = layer(got)
    except RuntimeError:  # the layers in this order do not even fit together
        got = None
    finally:
        model.train(was_training)
    if got is None or got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        raise ConfigError(
            f"cannot train {type(model).__name__} members at once: its forward is not its layers in order"
        )


def join_tensors(tensors: Sequence[torch.Tensor], join: Join) -> torch.Tensor:
    if join == "cat":
        return torch.cat(list(tensors))
    if join == "stack":
        return torch.stack(list(tensors))
    return tensors[0]


def split_tensor(tensor: torch.Tensor, join: Join, count: int) -> list[torch.Tensor]:
    """The inverse of :func:`join_tensors`: ``count`` views, one per member."""
    if join == "cat":
        return list(tensor.chunk(count))
    if join == "stack":
        return list(tensor.unbind(0))
    return [tensor] * count
