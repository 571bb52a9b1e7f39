"""A deeper conv net for the long-budget recipes and the committee: two 3x3 convolutions per stage, BatchNorm.

The layout follows the VGG habit (stacked 3x3 convolutions, channels doubling as the side halves) and the
CPU lesson of :mod:`mnistlab.models.cnn`: pool early, so that the expensive convolutions run at 14x14 and
7x7, where a 3x3 kernel already covers a stroke's width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 conv (same padding, no bias: BN supplies it) -> BatchNorm -> ReLU."""
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class DeepCNN(nn.Module):
    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            # stem at 28x28: one conv from the single input channel (cheap: 9 multiply-adds per output)
            nn.Conv2d(1, c1, kernel_size=3, padding=1, bias=False),  # (N, c1, 28, 28)
            nn.MaxPool2d(2),  # (N, c1, 14, 14): BN and ReLU then run on a quarter of the activations
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            *conv_bn_relu(c1, c2),
            *conv_bn_relu(c2, c2),  # (N, c2, 14, 14)
            nn.MaxPool2d(2),  # (N, c2, 7, 7)
            *conv_bn_relu(c2, c3),
            *conv_bn_relu(c3, c3),  # (N, c3, 7, 7)
            nn.MaxPool2d(2),  # (N, c3, 3, 3)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c3 * 3 * 3, num_classes),  # logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
