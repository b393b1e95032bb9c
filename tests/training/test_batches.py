"""On-device batching and augmentation."""

from __future__ import annotations

import torch

from training.batches import normalise, random_affine, random_crop, random_flip, train_batches
from training.datasets import DATASETS, Split


def indexed_split(n: int) -> Split:
    """Images whose every pixel holds their own index, so a batch tells which images it took."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28).contiguous()
    return Split(images, torch.arange(n) % 10)


def indices_of(x: torch.Tensor) -> list[int]:
    spec = DATASETS["mnist"]
    pixels = x[:, 0, 0, 0] * spec.std[0] + spec.mean[0]
    return [round(float(v) * 255) for v in pixels]


def test_an_epoch_visits_each_image_once_and_drops_the_partial_batch() -> None:
    split = indexed_split(100)
    g = torch.Generator().manual_seed(0)
    batches = list(train_batches(split, DATASETS["mnist"], 32, "none", g))
    assert [len(y) for _, y in batches] == [32, 32, 32]
    seen = [i for x, _ in batches for i in indices_of(x)]
    assert len(set(seen)) == 96
    assert seen != sorted(seen), "the epoch is shuffled"


def test_ddp_ranks_take_disjoint_shares_of_one_permutation() -> None:
    split = indexed_split(200)
    shares = []
    for rank in (0, 1):
        g = torch.Generator().manual_seed(7)
        shares.append({i for x, _ in train_batches(split, DATASETS["mnist"], 25, "none", g, rank, 2)
                       for i in indices_of(x)})
    assert len(shares[0]) == len(shares[1]) == 100
    assert not shares[0] & shares[1]


def test_random_crop_is_a_shifted_window_of_the_padded_image() -> None:
    x = torch.randn(8, 3, 32, 32)
    out = random_crop(x, 4, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for img, crop in zip(padded, out):
        windows = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(img[:, dy:dy + 32, dx:dx + 32], crop)]
        assert windows, "every crop is one of the 81 windows"


def test_random_flip_mirrors_some_and_keeps_the_rest() -> None:
    x = torch.randn(64, 3, 8, 8)
    out = random_flip(x, torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_affine_jitter_keeps_the_digit_and_the_background() -> None:
    spec = DATASETS["mnist"]
    img = torch.zeros(16, 1, 28, 28, dtype=torch.uint8)
    img[:, :, 8:20, 12:16] = 255  # a bar in the middle
    x = normalise(img, spec)
    out = random_affine(x, degrees=10, translate=0.1, scale=0.1, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    assert torch.allclose(out[:, :, 0, 0], x[:, :, 0, 0], atol=1e-5), "corners stay background"
    ink = (out > 0).flatten(1).sum(1).float()
    assert ((ink > 0.6 * 48) & (ink < 1.6 * 48)).all(), "the bar survives, roughly its size"
    assert not torch.allclose(out, x), "the images did move"
