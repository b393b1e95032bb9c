"""Network-in-Network (Lin, Chen & Yan, 2013): mlpconv blocks and global average pooling."""

from __future__ import annotations

import torch
import torch.nn as nn

from training.registry import register


def mlpconv(in_channels: int, widths: tuple[int, int, int], kernel: int) -> list[nn.Module]:
    """A k×k convolution followed by two 1×1 convolutions: a tiny MLP slid over the image.

    BatchNorm after each convolution is a modern addition (not in the 2013 paper): it lets the
    net train in tens of epochs with a plain SGD recipe instead of hundreds.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(widths):
        size = kernel if i == 0 else 1
        layers += [nn.Conv2d(channels, width, size, padding=size // 2, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        channels = width
    return layers


class NIN(nn.Module):
    """Three mlpconv blocks (5x5 192-160-96, 5x5 192-192-192, 3x3 192-192-classes),
    max/avg pooling and dropout between, global average pooling instead of an FC layer."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *mlpconv(in_channels, (192, 160, 96), 5),
            nn.MaxPool2d(3, stride=2, padding=1), nn.Dropout(0.5),
            *mlpconv(96, (192, 192, 192), 5),
            nn.AvgPool2d(3, stride=2, padding=1), nn.Dropout(0.5),
            *mlpconv(192, (192, 192, num_classes), 3),
        )
        # Each of the last block's maps is one class's confidence; averaging them is the classifier.
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


@register("nin", paper="Lin et al. 2013, Network in network",
          summary="3 mlpconv blocks + global average pooling, no FC layer")
def nin(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return NIN(in_channels, num_classes)
