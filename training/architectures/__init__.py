"""Importing this package registers every architecture."""

from training.architectures import (  # noqa: F401
    inception,
    nin,
    preact_resnet,
    residual,
    small,
    torchvision_cifar,
)
