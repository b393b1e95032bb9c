"""Pre-activation ResNet-18 (He et al. 2016, ResNet v2) for 32×32 inputs.

torchvision has no pre-activation ResNet, so this one is written out (as in kuangliu/pytorch-cifar).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.registry import register


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; a 1×1 projection on the pre-activated input when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, blocks: list[int], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2 ** stage
            for i in range(count):
                layers.append(PreActBlock(in_planes, planes, stride=2 if stage and i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)  # v2 nets end with BN-ReLU before pooling
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@register("preact-resnet18", paper="He et al. 2016, Identity mappings in deep residual networks",
          summary="pre-activation ResNet-18 with a 3x3 stride-1 stem")
def preact_resnet18(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    return PreActResNet([2, 2, 2, 2], in_channels, num_classes)
