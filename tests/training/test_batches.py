"""On-device batching and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from training.batches import (BLURS, RESOLUTIONS, augment, elastic_deform, normalise, random_affine, random_binarise,
                              random_blur, random_crop, random_fill_box, random_flip, random_resolution_loss,
                              random_stroke_width, train_batches)
from training.datasets import DATASETS, Split, load_split


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


# --- the digit ops, on real fixture digits (ink in [0, 1], white on black) -----------------

@pytest.fixture(scope="module")
def ink(fixtures_dir: Path) -> torch.Tensor:
    """64 real MNIST test digits as ink in [0, 1]."""
    return load_split("mnist", False, fixtures_dir, download=False).images[:64].float() / 255


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per image: did the op change it?"""
    return (before - after).abs().flatten(1).amax(1) > 1e-6


def test_stroke_width_thickens_and_thins_as_asked(ink: torch.Tensor) -> None:
    area = (ink > 0.5).flatten(1).sum(1).float()
    thicker = random_stroke_width(ink, seeded(), share=1.0, thinnest=1.0, thickest=2.0)
    thinner = random_stroke_width(ink, seeded(), share=1.0, thinnest=-0.7, thickest=-0.7)
    assert ((thicker > 0.5).flatten(1).sum(1) > 1.3 * area).all(), "a pixel or two thicker: much more ink"
    assert ((thinner > 0.5).flatten(1).sum(1) < 0.9 * area).all(), "thinner: less ink"
    # The strongest ink stays at full strength, as the service's level stretching leaves it.
    assert torch.allclose(thinner.flatten(1).amax(1), torch.ones(len(ink)))
    # The ink is still where the digit was: thinning never moves it.
    assert ((thinner > 0) <= (ink > 0)).all()


def test_stroke_width_leaves_the_unchosen_images_alone(ink: torch.Tensor) -> None:
    out = random_stroke_width(ink, seeded(1), share=0.5)
    touched = changed(ink, out)
    assert 16 < touched.sum() < 48
    assert torch.equal(out[~touched], ink[~touched])


def test_binarise_makes_pure_black_and_white(ink: torch.Tensor) -> None:
    out = random_binarise(ink, seeded(2), share=0.5)
    touched = changed(ink, out)
    assert 16 < touched.sum() < 48
    assert set(out[touched].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out[~touched], ink[~touched])
    # Ink stays ink: every binarised pixel was at least the lowest threshold, 25 % of the strongest.
    strongest = ink[touched].amax(dim=(1, 2, 3), keepdim=True).expand_as(ink[touched])
    assert (ink[touched][out[touched] == 1] >= 0.25 * strongest[out[touched] == 1]).all()
    # A faint image (a blurred thumbnail) is binarised against its own strongest ink, never emptied.
    faint = random_binarise(ink * 0.4, seeded(2), share=1.0)
    assert (faint.flatten(1).amax(1) == 1).all()


def test_blur_is_a_gaussian_of_one_of_the_sigmas_at_full_strength(ink: torch.Tensor) -> None:
    out = random_blur(ink, seeded(5), share=0.5)
    touched = changed(ink, out)
    assert touched.sum() == 32
    pil = []  # Pillow's Gaussian blur of the same digit, as an independent reference
    for before, after in zip(ink[touched], out[touched]):
        image = Image.fromarray((before[0].numpy() * 255).astype(np.uint8))
        references = [np.asarray(image.filter(ImageFilter.GaussianBlur(s)), np.float32) for s in BLURS]
        references = [r / r.max() for r in references]
        errors = [float(np.abs(after[0].numpy() - r).mean()) for r in references]
        pil.append(int(np.argmin(errors)))
        # Pillow's is a box approximation, a little looser at the widest sigma; the next sigma is 0.03 off
        assert min(errors) < 0.015 and after.max() == 1.0
    assert set(pil) == set(range(len(BLURS)))  # every sigma is dealt out
    assert torch.equal(out[~touched], ink[~touched])


def test_resolution_loss_is_the_field_shrunk_to_a_thumbnail_and_enlarged(ink: torch.Tensor) -> None:
    out = random_resolution_loss(ink, seeded(3), share=0.5)
    touched = changed(ink, out)
    assert 16 < touched.sum() < 48
    shrinkers = set()
    for before, after in zip(ink[touched], out[touched]):
        small = [F.interpolate(before[None], size=(s, s), mode="area") for s in RESOLUTIONS]
        small += [F.interpolate(before[None], size=(s, s), mode="bilinear", antialias=True) for s in RESOLUTIONS]
        thumbnails = [F.interpolate(t, size=(28, 28), mode="bicubic", align_corners=False)[0] for t in small]
        full = [(t / t.max()).clamp(0, 1) for t in thumbnails]  # levels stretched, as the service does
        matches = [i for i, t in enumerate(full) if torch.allclose(after, t, atol=1e-6)]
        assert matches and after.max() == 1.0
        shrinkers.add("area" if matches[0] < len(RESOLUTIONS) else "bilinear")
    assert shrinkers == {"area", "bilinear"}  # both ways of shrinking are dealt out
    # Detail is lost: less difference between neighbouring pixels.
    def roughness(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:] - x[..., :-1]).abs().sum()
    assert roughness(out[touched]) < 0.8 * roughness(ink[touched])


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """N×2: each image's (row, column) centre of mass."""
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = x[:, 0].sum((1, 2))
    return torch.stack([(x[:, 0] * ys).sum((1, 2)), (x[:, 0] * xs).sum((1, 2))], 1) / mass[:, None]


def test_elastic_warp_moves_the_ink_but_keeps_the_digit(ink: torch.Tensor) -> None:
    out = elastic_deform(ink, seeded(4), share=1.0)
    assert changed(ink, out).all()
    # A smooth warp stretches some strokes and squeezes others: the ink's mass changes locally,
    # but not overall, and the digit stays where it was.
    mass_ratio = out.flatten(1).sum(1) / ink.flatten(1).sum(1)
    assert 0.9 < mass_ratio.median() < 1.1 and ((mass_ratio > 0.5) & (mass_ratio < 2)).all()
    assert (centre_of_mass(out) - centre_of_mass(ink)).norm(dim=1).max() < 2.5
    # Smooth: a pixel's neighbours move with it, so the warped image is no rougher than the digit.
    def roughness(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:] - x[..., :-1]).abs().sum()
    assert roughness(out) < 1.3 * roughness(ink)


def test_affine_shear_slants_the_digits_within_its_range(ink: torch.Tensor) -> None:
    def slant(x: torch.Tensor) -> torch.Tensor:
        """Moment slant: how far the ink's x moves per row down (> 0: the bottom leans right)."""
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        m = x[:, 0].clamp(min=0)
        mass = m.sum((1, 2))
        my, mx = (m * ys).sum((1, 2)) / mass, (m * xs).sum((1, 2)) / mass
        return (m * (ys - my.view(-1, 1, 1)) * (xs - mx.view(-1, 1, 1))).sum((1, 2)) / \
            (m * (ys - my.view(-1, 1, 1)) ** 2).sum((1, 2))
    out = random_affine(ink, degrees=0, translate=0, scale=0, shear=0.3, generator=seeded(5))
    change = slant(out) - slant(ink)
    assert change.abs().max() < 0.35 and change.abs().mean() > 0.05
    assert (change > 0.05).any() and (change < -0.05).any(), "both ways"


def test_fill_box_stretches_the_ink_box_towards_a_square_about_the_centre_of_mass(ink: torch.Tensor) -> None:
    def box(x: torch.Tensor) -> tuple[int, int]:
        rows, cols = torch.nonzero((x[0] > 0.3).any(1)), torch.nonzero((x[0] > 0.3).any(0))
        return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)

    out = random_fill_box(ink, seeded(6), share=1.0)
    assert (centre_of_mass(out) - centre_of_mass(ink)).abs().max() < 1.0
    widened = 0
    for before, after in zip(ink, out):
        (h0, w0), (h1, w1) = box(before), box(after)
        assert max(h1, w1) <= 22, "the longer side is about the 20-px box"
        assert min(h1, w1) / max(h1, w1) >= min(h0, w0) / max(h0, w0) - 0.1, "never further from square"
        widened += w1 > w0 + 2
    assert widened > 16, "narrow digits (1s, 7s) get wider"


def test_digit_robust_is_seeded_and_keeps_the_normalised_range(fixtures_dir: Path) -> None:
    spec = DATASETS["mnist"]
    images = load_split("mnist", True, fixtures_dir, download=False).images[:256]
    x = normalise(images, spec)
    first, again = augment(x, "digit-robust", seeded(7), spec), augment(x, "digit-robust", seeded(7), spec)
    assert torch.equal(first, again), "the same generator state gives the same batch"
    assert not torch.equal(first, augment(x, "digit-robust", seeded(8), spec))
    background, full = normalise(torch.tensor([[[[0, 255]]]], dtype=torch.uint8), spec).flatten().tolist()
    assert first.min() >= background - 1e-5 and first.max() <= full + 1e-5
    assert changed(x, first).float().mean() > 0.9, "nearly every image is changed somehow"
    # No digit is lost on the way: every image keeps ink at full strength (as the service's
    # fields have), and enough of it, across many batches.
    for seed in range(10):
        ink = augment(x, "digit-robust", seeded(seed), spec) * spec.std[0] + spec.mean[0]
        assert (ink.flatten(1).amax(1) > 0.99).all(), f"seed {seed}: an image lost its ink"
        assert ((ink > 0.5).flatten(1).sum(1) >= 15).all(), f"seed {seed}: an image kept almost no ink"
    with pytest.raises(ValueError, match="known: none, affine, digit-robust, crop-flip"):
        augment(x, "digit-fancy", seeded(), spec)
