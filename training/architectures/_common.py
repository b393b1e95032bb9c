"""Helpers shared by the architecture files."""

from __future__ import annotations

import torch
import torch.nn as nn


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Size of `features`' output, flattened, for one input image (so FC layers fit any geometry)."""
    with torch.no_grad():
        return features.eval()(torch.zeros(1, in_channels, image_size, image_size)).numel()
