"""Two ways a trained net is averaged: over its weights during training, over views at test time.

- `WeightAverage`: an exponential moving average of the weights and BatchNorm statistics
  (Polyak averaging). Short schedules end while the weights still jitter from step to step;
  their average is a smoother, usually better, model. It is what a run saves and exports.
- `FlipAveraged`: logits averaged over the image and its mirror image (test-time horizontal
  flip). It wraps the module, so the exported ONNX graph computes it too and the parity gate,
  the service and every published figure see the same model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

TEST_TIME_AUGMENTATIONS = ("none", "hflip")


class WeightAverage:
    """EMA of `model`'s state: avg <- decay * avg + (1 - decay) * current, after every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an EMA decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def effective_decay(self) -> float:
        # Ramps up from 0.1 (timm's warm-up): an average that started from the random
        # initialisation would otherwise take ~1/(1-decay) steps to forget it.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.effective_decay()
        floats_avg, floats_now = [], []
        for avg, now in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                floats_avg.append(avg)
                floats_now.append(now.detach())
            else:
                avg.copy_(now)  # BatchNorm's step counter
        torch._foreach_lerp_(floats_avg, floats_now, weight)


class FlipAveraged(nn.Module):
    """`net`'s logits averaged over the image and its left-right mirror image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.net(x) + self.net(torch.flip(x, dims=[3])))


def with_test_time_augmentation(model: nn.Module, kind: str) -> nn.Module:
    """`model` wrapped for the recipe's test-time augmentation ("none" returns it as it is)."""
    if kind == "none":
        return model
    if kind == "hflip":
        return FlipAveraged(model)
    raise ValueError(f"unknown test-time augmentation {kind!r}; known: {', '.join(TEST_TIME_AUGMENTATIONS)}")
