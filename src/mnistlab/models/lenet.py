"""LeNet-5 (LeCun et al., 1998), adapted to 28x28 input, and the lecture's wider variant.

The original takes 32x32 images; padding the first 5x5 convolution by 2 gives the same 28x28 feature map
from MNIST's 28x28 digits. We use ReLU and max-pooling (the modern reading) instead of scaled tanh and
trainable sub-sampling; the layer sizes are the paper's.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(
        self,
        channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
        dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=5, padding=2),  # (N, c1, 28, 28)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (N, c1, 14, 14)
            nn.Conv2d(c1, c2, kernel_size=5),  # (N, c2, 10, 10)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (N, c2, 5, 5)
        )
        h1, h2 = hidden
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 5 * 5, h1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(h2, num_classes),  # logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
