"""Preprocessing: MNIST's own procedure for digits, a plain resize for photos, then mean/std."""

from __future__ import annotations

import numpy as np
import pytest
from testkit.fixture_images import cifar_test, encode, ink_on_paper, mnist_test, photo_of_paper
from PIL import Image

from service.preprocess import InputSpec, digit_field, preprocess
from training.datasets import DATASETS

MNIST, CIFAR = DATASETS["mnist"], DATASETS["cifar10"]  # the statistics training normalised with
MNIST_SPEC = InputSpec(kind="digit", channels=1, height=28, width=28, mean=MNIST.mean, std=MNIST.std)
CIFAR_SPEC = InputSpec(kind="photo", channels=3, height=32, width=32, mean=CIFAR.mean, std=CIFAR.std)
LIMIT = 40_000_000


def centre_of_mass(field: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(field.shape)
    return float((ys * field).sum() / field.sum()), float((xs * field).sum() / field.sum())


def field(gray: np.ndarray) -> np.ndarray:
    """digit_field on an 8-bit array, as values in [0, 1]."""
    return digit_field(gray).astype(np.float32) / 255


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_an_mnist_digit_comes_back_nearly_unchanged() -> None:
    # MNIST digits already went through this procedure: redoing it must change little.
    images, _ = mnist_test()
    correlations = [correlation(field(x), x / 255) for x in images[:200]]
    assert np.median(correlations) > 0.95
    assert np.mean(correlations) > 0.9


def test_a_digit_is_cropped_scaled_to_20_px_and_centred_by_mass() -> None:
    page = np.full((500, 400), 255, np.uint8)
    page[30:130, 300:340] = 0  # a black bar, 100x40, near the top-right corner of white paper
    page[30:50, 280:300] = 0  # with a flag on its top-left: the mass sits left of the box centre
    result = field(page)
    assert result.shape == (28, 28)
    rows = np.flatnonzero((result > 0.3).any(axis=1))
    assert 19 <= rows[-1] - rows[0] + 1 <= 21  # the longer side is 20 px
    cy, cx = centre_of_mass(result)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # where MNIST puts it
    assert result.max() == pytest.approx(1.0, abs=0.05)  # black ink became full-white ink


@pytest.mark.parametrize("variant", ["ink_on_paper", "photo_of_paper"])
def test_the_same_digit_drawn_differently_reaches_the_model_alike(variant: str) -> None:
    images, _ = mnist_test()
    rng = np.random.default_rng(0)
    make = {"ink_on_paper": ink_on_paper, "photo_of_paper": photo_of_paper}[variant]
    correlations = []
    for x in images[:60]:
        page = np.asarray(make(x, rng).convert("L"))
        correlations.append(correlation(field(page), field(x)))
    assert np.median(correlations) > 0.85


def test_a_blank_page_gives_an_empty_field() -> None:
    assert not field(np.full((50, 80), 240, np.uint8)).any()
    assert not field(np.zeros((28, 28), np.uint8)).any()


def test_digit_input_is_normalised_with_the_cards_mean_and_std() -> None:
    x = preprocess(encode(mnist_test()[0][0]), MNIST_SPEC, LIMIT)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert x.min() == pytest.approx(-MNIST.mean[0] / MNIST.std[0], abs=1e-6)  # the black background


def test_a_32px_photo_passes_unchanged_but_for_mean_and_std() -> None:
    images, _ = cifar_test()
    x = preprocess(encode(images[0]), CIFAR_SPEC, LIMIT)
    expected = (images[0].transpose(2, 0, 1) / 255 - np.array(CIFAR_SPEC.mean)[:, None, None]) \
        / np.array(CIFAR_SPEC.std)[:, None, None]
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_a_large_photo_is_resized_to_32px() -> None:
    images, _ = cifar_test()
    big = Image.fromarray(images[1]).resize((320, 240), Image.Resampling.BICUBIC)  # also a new aspect
    x = preprocess(encode(big, "JPEG", quality=95), CIFAR_SPEC, LIMIT)
    original = preprocess(encode(images[1]), CIFAR_SPEC, LIMIT)
    assert x.shape == (3, 32, 32)
    assert correlation(x, original) > 0.95


def test_input_spec_comes_from_the_card(random_repo) -> None:
    from service.repository import read_card

    spec = InputSpec.from_card(read_card(random_repo / "lenet5-cifar10"))
    assert spec == CIFAR_SPEC


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 100), (100, 1), (3, 3)])
def test_tiny_and_thin_images_are_handled(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=shape, dtype=np.uint8)
    gray.flat[0] = 0
    result = field(gray)
    assert result.shape == (28, 28) and np.isfinite(result).all()
    photo = preprocess(encode(np.dstack([gray] * 3)), CIFAR_SPEC, LIMIT)
    assert photo.shape == (3, 32, 32)
