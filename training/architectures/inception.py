"""Inception-mini: a small GoogLeNet-style net for MNIST (Szegedy et al., 2015)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.architectures._common import flat_features
from training.registry import register


class InceptionA(nn.Module):
    """Four parallel branches concatenated: 16 + 24 + 24 + 24 = 88 output channels."""

    out_channels = 88

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, 1)
        self.branch5x5 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 5, padding=2))
        self.branch3x3 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 3, padding=1),
                                       nn.Conv2d(24, 24, 3, padding=1))
        self.branch_pool = nn.Conv2d(in_channels, 24, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3(x), pooled], dim=1)


class InceptionMini(nn.Module):
    """conv10(5x5) -> pool -> InceptionA -> conv20(5x5) -> pool -> InceptionA -> FC."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 10, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            InceptionA(10),
            nn.Conv2d(InceptionA.out_channels, 20, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            InceptionA(20),
        )
        self.fc = nn.Linear(flat_features(self.features, in_channels, image_size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


@register("inception", paper="Szegedy et al. 2015, Going deeper with convolutions",
          summary="conv10-pool-InceptionA(88)-conv20-pool-InceptionA(88)-fc")
def inception(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return InceptionMini(in_channels, image_size, num_classes)
