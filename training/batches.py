"""Batching and augmentation on the training device, airbench-style.

The whole split lives on the device as uint8; each epoch is one random permutation, and
crops, flips and affine jitter are batched tensor ops, so a GPU never waits for a Python
data loader and a CPU does no per-image work in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import torch
import torch.nn.functional as F

from training.datasets import DatasetSpec, Split


def normalise(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 N×C×H×W -> float32, scaled to [0, 1] then standardised with the dataset's mean/std."""
    mean, std = _mean_std(spec, images.device)
    return (images.float() / 255.0 - mean) / std


@lru_cache
def _mean_std(spec: DatasetSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device: a fresh host-to-GPU copy every batch would stall the GPU."""
    return (torch.tensor(spec.mean, device=device).view(1, -1, 1, 1),
            torch.tensor(spec.std, device=device).view(1, -1, 1, 1))


def batches_per_epoch(examples: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches each rank gets per epoch (the last partial batch is dropped)."""
    return (examples // world_size) // batch_size


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `padding` (zeros after normalisation: the mean colour) and crop back at a random offset per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h))  # n×h
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w))  # n×w
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    # Gather rows then columns: padded[n, :, rows[n], cols[n]] for every image at once.
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror half the images left-right."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def random_affine(x: torch.Tensor, degrees: float, translate: float, scale: float,
                  generator: torch.Generator) -> torch.Tensor:
    """A light random rotation, shift and zoom per image (for digits: never a flip)."""
    n = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=dev, generator=generator)

    angle = uniform(-degrees, degrees) * torch.pi / 180
    zoom = uniform(1 - scale, 1 + scale)
    tx, ty = uniform(-translate, translate) * 2, uniform(-translate, translate) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Fill outside the image with the background (the minimum, i.e. black after normalisation).
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - background, grid, align_corners=False) + background


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the recipe's augmentation: "none", "affine" (digits) or "crop-flip" (photos)."""
    if kind == "none":
        return x
    if kind == "affine":
        return random_affine(x, degrees=10, translate=0.1, scale=0.1, generator=generator)
    if kind == "crop-flip":
        return random_flip(random_crop(x, 4, generator), generator)
    raise ValueError(f"unknown augmentation {kind!r}")


def train_batches(split: Split, spec: DatasetSpec, batch_size: int, augmentation: str,
                  generator: torch.Generator, rank: int = 0, world_size: int = 1,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented, normalised batches; the last partial batch is dropped.

    Under DDP every rank draws the same permutation (same generator state) and takes its own
    interleaved share, so the ranks see disjoint data and equal batch counts.
    """
    n = len(split)
    order = torch.randperm(n, device=split.images.device, generator=generator)
    per_rank = n // world_size
    order = order[rank: per_rank * world_size: world_size]
    for start in range(0, batches_per_epoch(n, batch_size, world_size) * batch_size, batch_size):
        idx = order[start:start + batch_size]
        x = normalise(split.images[idx], spec)
        yield augment(x, augmentation, generator), split.labels[idx]


def eval_batches(split: Split, spec: DatasetSpec, batch_size: int,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The whole split in order, normalised, not augmented."""
    for start in range(0, len(split), batch_size):
        yield (normalise(split.images[start:start + batch_size], spec),
               split.labels[start:start + batch_size])
