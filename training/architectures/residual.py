"""Small residual nets for MNIST: ResNet v1 blocks and ResNet v2 pre-activation blocks.

He et al. 2015 (Deep residual learning) and 2016 (Identity mappings in deep residual networks).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.architectures._common import flat_features
from training.registry import register


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add the input, ReLU (the original ResNet block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class PreActResidualBlock(nn.Module):
    """BN-ReLU-conv3x3 twice, identity shortcut, nothing after the add (full pre-activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return x + y


class SmallResNet(nn.Module):
    """conv16(5x5) -> pool -> block(16) -> conv32(5x5) -> pool -> block(32) -> FC."""

    def __init__(self, block: type[nn.Module], in_channels: int, image_size: int,
                 num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            block(16),
            nn.Conv2d(16, 32, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            block(32),
        )
        self.fc = nn.Linear(flat_features(self.features, in_channels, image_size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


@register("residual", paper="He et al. 2016, Deep residual learning for image recognition",
          summary="conv16-pool-ResBlock(16)-conv32-pool-ResBlock(32)-fc")
def residual(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return SmallResNet(ResidualBlock, in_channels, image_size, num_classes)


@register("preact-residual", paper="He et al. 2016, Identity mappings in deep residual networks",
          summary="the residual net with full pre-activation (ResNet v2) blocks")
def preact_residual(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return SmallResNet(PreActResidualBlock, in_channels, image_size, num_classes)
