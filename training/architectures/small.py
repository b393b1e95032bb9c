"""The small MNIST nets: a 2-conv CNN with dropout, and LeNet-5."""

from __future__ import annotations

import torch
import torch.nn as nn

from training.architectures._common import flat_features
from training.registry import register


class SimpleCNN(nn.Module):
    """Two conv blocks and a dropout MLP: the classic MNIST teaching net."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_features(self.features, in_channels, image_size), 128),
            nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 as this project defines it (LeCun et al., 1998, with max pooling).

    As specified for this project: no activation between the convolutions, max pooling being the
    only non-linearity before the classifier.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_features(self.features, in_channels, image_size), 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("cnn", paper="LeCun et al. 1998, Gradient-based learning applied to document recognition; dropout: Srivastava et al. 2014",
          summary="conv16-pool-conv32-pool-fc128-dropout-fc")
def cnn(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return SimpleCNN(in_channels, image_size, num_classes)


@register("lenet5", paper="LeCun et al. 1998, Gradient-based learning applied to document recognition",
          summary="conv16(5x5)-pool-conv32(5x5)-pool-fc32-fc")
def lenet5(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return LeNet5(in_channels, image_size, num_classes)
