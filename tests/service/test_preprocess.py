"""Preprocessing: MNIST's own procedure for digits, a plain resize for photos, then mean/std."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from service.preprocess import InputSpec, digit_field, preprocess
from service.strokes import SOFT, THICKEST, THINNEST, mnist_strokes, stroke_width
from testkit.digit_conditions import phone_photo, stretch_to_fill
from testkit.digit_conditions import stroke_width as pen_width
from testkit.fixture_images import cifar_test, encode, ink_on_paper, mnist_test, photo_of_paper
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
    page[30:130, 320:334] = 0  # a pen stroke, 100x14, near the top-right corner of white paper
    page[30:44, 290:320] = 0  # with a flag on its top-left: the mass sits left of the box centre
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


# --- what users send, degraded as in the digit benchmark (make bench-digits) --------------

def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_a_digit_stretched_to_fill_its_frame_stays_white_ink_on_black() -> None:
    # A 1 stretched to a square is more ink than background: its median is ink, not background,
    # and its frame is half ink. It must still come out as the stroke, not as the gaps beside it.
    images, labels = mnist_test()
    ones = [x for x, label in zip(images, labels) if label == 1][:30]
    stretched = [np.asarray(stretch_to_fill(x, 1.0)) for x in ones]
    assert sum((s > 127).mean() > 0.5 for s in stretched) >= 5, "many are mostly ink"
    for one, s in zip(ones, stretched):
        result = field(s)
        assert result[0].max() == result[-1].max() == 0, "the field's frame is background"
        assert correlation(result, one / 255) > 0.2, "the stroke, fattened, where the 1 was"


def test_a_phone_photo_with_a_shadow_across_the_digit_reads_as_the_digit() -> None:
    # Steep light, a shadow's edge through the digit: the paper in shade is darker than the ink in
    # the light, so no single threshold separates them; dividing by the paper's brightness does.
    images, _ = mnist_test()
    rng = np.random.default_rng(0)
    correlations, dim_frames = [], 0
    for x in images[:40]:
        page = decoded(phone_photo(x, rng, harsh=True))
        dim_frames += np.median(np.concatenate([page[0], page[-1], page[:, 0], page[:, -1]])) < np.median(page)
        correlations.append(correlation(field(page), field(x)))
    assert np.median(correlations) > 0.8 and np.mean(np.array(correlations) > 0.6) > 0.9
    assert dim_frames >= 10, "the photos do put the frame in shadow"


def test_hairline_and_marker_strokes_come_out_as_mnist_strokes() -> None:
    images, _ = mnist_test()
    for radius, low, high in ((-4, THINNEST, None), (8, None, THICKEST)):
        widths, strengths = [], []
        for x in images[:40]:
            result = digit_field(pen_width(x, radius))
            widths.append(stroke_width(result.astype(np.float32)))
            strengths.append(np.sort(result.ravel())[-4])
        widths = np.array(widths)
        if low is not None:  # a hairline: thickened to MNIST's thinnest, and at full strength
            assert (widths >= low - 0.05).all() and min(strengths) >= 230
        if high is not None:  # a marker: thinned towards MNIST's thickest
            assert np.median(widths) <= high + 0.1
    # The same digits as MNIST wrote them are left alone.
    clean = np.array([stroke_width(digit_field(x).astype(np.float32)) for x in images[:40]])
    assert np.median(clean) == pytest.approx(2.0, abs=0.3)


def test_a_blurred_digit_is_left_soft_not_thinned_like_a_marker(monkeypatch) -> None:
    images, _ = mnist_test()
    blurred = [np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(2))) for x in images[:60]]
    markers = [np.asarray(pen_width(x, 8)) for x in images[:20]]
    with_step = [digit_field(b).astype(np.float32) / 255 for b in blurred + markers]
    monkeypatch.setattr("service.preprocess.mnist_strokes", lambda digit: digit)
    without = [digit_field(b).astype(np.float32) / 255 for b in blurred + markers]
    def full_share(ink: np.ndarray) -> float:
        return (ink > 0.9).sum() / (ink > 0.1).sum()
    soft = [i for i in range(len(blurred)) if stroke_width(without[i]) > THICKEST]
    assert len(soft) > 15, "blur sigma 2 makes many digits wider than MNIST's strokes"
    for i in soft:
        assert full_share(without[i]) < SOFT, "blur leaves it soft (few pixels at full strength)"
        # Only its strength is stretched: as wide, neither eroded nor given a steeper edge.
        assert stroke_width(with_step[i]) == pytest.approx(stroke_width(without[i]), rel=0.02)
    # A marker's strokes, as wide but solid, are thinned towards MNIST's.
    wide_markers = [i for i in range(len(blurred), len(without)) if stroke_width(without[i]) > THICKEST]
    assert len(wide_markers) > 5
    assert all(stroke_width(with_step[i]) < min(THICKEST + 0.1, stroke_width(without[i])) for i in wide_markers)


def test_mnist_strokes_leave_mnist_digits_exactly_as_they_are() -> None:
    images, _ = mnist_test()
    boxes = []
    for x in images:
        rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
        boxes.append(np.ascontiguousarray(x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]))
    unchanged = [mnist_strokes(box) is box for box in boxes]
    assert np.mean(unchanged) > 0.95
