"""One registry of architectures: each is registered once, with its paper and defaults.

A factory takes the input geometry (channels, image size) and the number of classes, so
every architecture builds for MNIST (1×28×28) and CIFAR-10 (3×32×32) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

Factory = Callable[[int, int, int], nn.Module]  # (in_channels, image_size, num_classes)


@dataclass(frozen=True)
class Architecture:
    name: str
    factory: Factory
    paper: str
    summary: str


_REGISTRY: dict[str, Architecture] = {}


def register(name: str, paper: str, summary: str) -> Callable[[Factory], Factory]:
    """Decorator: add a factory to the registry under `name`."""
    def wrap(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        _REGISTRY[name] = Architecture(name, factory, paper, summary)
        return factory
    return wrap


def architectures() -> dict[str, Architecture]:
    """Every registered architecture, by name."""
    import training.architectures  # noqa: F401  (registers them all)
    return dict(_REGISTRY)


def build_model(name: str, in_channels: int, image_size: int, num_classes: int = 10) -> nn.Module:
    """Build a fresh, randomly initialised `name` for the given input geometry."""
    archs = architectures()
    if name not in archs:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(archs))}")
    return archs[name].factory(in_channels, image_size, num_classes)
