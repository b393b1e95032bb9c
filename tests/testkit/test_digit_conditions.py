"""The digit benchmark's conditions do what their names say, on real MNIST test digits, and
always give the same files."""

from __future__ import annotations

import io
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from testkit.digit_conditions import (BY_NAME, CONDITIONS, DRAWN_VARIANTS, ENLARGE, benchmark_files,
                                     mnist_test_digits)
from testkit.fixture_images import mnist_test

DIGITS, LABELS = mnist_test()
SAMPLE = DIGITS[:40], LABELS[:40]


@lru_cache(maxsize=None)  # the drawn conditions render hundreds of 560-px pads
def made(name: str, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    return BY_NAME[name].make(*SAMPLE, seed)


def files_of(name: str, seed: int = 0) -> list[bytes]:
    return made(name, seed)[0]


def decoded(name: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(data)) for data in files_of(name)]


def grey(name: str) -> list[np.ndarray]:
    return [np.asarray(image.convert("L")) for image in decoded(name)]


def moments(image: np.ndarray) -> tuple[float, float, float]:
    """(var y, cov xy, var x) of the ink, for slant and orientation."""
    ys, xs = np.indices(image.shape)
    m = image.astype(np.float64)
    my, mx = (m * ys).sum() / m.sum(), (m * xs).sum() / m.sum()
    return ((m * (ys - my) ** 2).sum(), (m * (ys - my) * (xs - mx)).sum(), (m * (xs - mx) ** 2).sum())


def test_every_condition_is_deterministic_and_keeps_the_labels() -> None:
    for condition in CONDITIONS:
        files, labels = made(condition.name)
        again, _ = condition.make(*SAMPLE, 0) if condition.name != "drawn-varied" else made(condition.name)
        assert files == again, f"{condition.name} is not deterministic"
        if not condition.name.startswith("drawn"):
            assert len(files) == 40 and np.array_equal(labels, SAMPLE[1])
    assert files_of("photo-harsh", 0) != files_of("photo-harsh", 1), "the seed matters where chance does"


def test_files_are_what_a_user_sends() -> None:
    formats = {name: {image.format for image in decoded(name)} for name in BY_NAME}
    for name, found in formats.items():
        expected = "JPEG" if name.startswith(("jpeg", "photo")) else "PNG"
        assert found == {expected}, name
    assert {image.mode for image in decoded("binarised-50")} == {"1"}, "a 1-bit file, as a bilevel scan saves"
    assert {image.mode for image in decoded("photo-mild")} == {"RGB"}


def test_stroke_width_thins_and_thickens_the_enlarged_digit() -> None:
    def ink(name: str) -> np.ndarray:
        return np.array([(image >= 128).sum() for image in grey(name)], float)
    enlarged = np.array([(np.asarray(Image.fromarray(d).resize((112, 112), Image.Resampling.BICUBIC)) >= 128).sum()
                         for d in SAMPLE[0]], float)
    assert {image.size for image in decoded("thin-1")} == {(28 * ENLARGE, 28 * ENLARGE)}
    assert (ink("thin-2") < ink("thin-1")).all() and (ink("thin-1") < enlarged).all()
    assert (enlarged < ink("thick-1")).all() and (ink("thick-1") < ink("thick-2")).all()
    assert np.median(ink("thick-2") / enlarged) > 2, "a marker: more than twice the ink"


def test_binarisation_leaves_two_levels_at_its_threshold() -> None:
    for name, threshold in (("binarised-25", 64), ("binarised-50", 128), ("binarised-75", 192)):
        for digit, image in zip(SAMPLE[0], grey(name)):
            assert np.array_equal(image > 0, digit >= threshold)


def test_thumbnails_are_sent_at_their_size() -> None:
    for size in (16, 12, 8):
        assert {image.size for image in decoded(f"small-{size}")} == {(size, size)}


def test_stretched_digits_fill_their_frame() -> None:
    for image in grey("stretched-full"):
        assert image.shape == (28, 28)
        edges = (image[0], image[-1], image[:, 0], image[:, -1])
        assert all(edge.max() > 32 for edge in edges), "ink on all four edges: no margin"
    half = grey("stretched-half")
    assert all(max(image.shape) == 28 for image in half)
    ones = [image for image, label in zip(half, SAMPLE[1]) if label == 1]
    assert ones and all(0.3 < image.shape[1] / image.shape[0] < 0.9 for image in ones), "a 1 half-way to a square"


def test_rotation_and_shear_turn_and_slant_the_digit() -> None:
    def orientation(image: np.ndarray) -> float:
        vy, cxy, vx = moments(image)
        return np.degrees(0.5 * np.arctan2(2 * cxy, vx - vy))
    turned = [orientation(r) - orientation(d) for d, r in zip(SAMPLE[0], grey("rotated-ccw-15"))
              if abs(moments(d)[1]) > 0]
    # Image y points down, so an anticlockwise turn lowers the principal axis angle.
    assert np.median(turned) == pytest.approx(-15, abs=2)

    def slant(image: np.ndarray) -> float:
        vy, cxy, _ = moments(image)
        return cxy / vy
    leaned = [slant(s) - slant(d) for d, s in zip(SAMPLE[0], grey("sheared-right-0.3"))]
    # Leaning right: the top moves right, so x falls as y (downwards) grows.
    assert np.median(leaned) == pytest.approx(-0.3, abs=0.05)


def test_blur_and_jpeg_degrade_but_keep_the_digit() -> None:
    def roughness(images: list[np.ndarray]) -> float:
        return float(sum(np.abs(np.diff(image.astype(float), axis=1)).sum() for image in images))
    clean = [d for d in SAMPLE[0]]
    assert roughness(grey("blurred-2")) < roughness(grey("blurred-1")) < roughness(clean)
    for name in ("jpeg-50", "jpeg-20"):
        errors = [np.abs(j.astype(float) - d).mean() for j, d in zip(grey(name), clean)]
        assert 0.5 < np.mean(errors) < 20, name
    assert np.mean([np.abs(j.astype(float) - d).mean() for j, d in zip(grey("jpeg-20"), clean)]) > \
        np.mean([np.abs(j.astype(float) - d).mean() for j, d in zip(grey("jpeg-50"), clean)])


def test_phone_photos_are_dark_ink_on_unevenly_lit_paper() -> None:
    def paper_spread(image: np.ndarray) -> float:
        return float(np.percentile(image, 95) - np.percentile(image, 5))
    mild, harsh = grey("photo-mild"), grey("photo-harsh")
    for image in mild + harsh:
        assert image.shape == (240, 320)
        assert image.min() < np.median(image) - 40, "ink darker than the page"
    assert np.median([np.median(image) for image in mild]) > 150, "a light page"
    assert np.median([paper_spread(i) for i in harsh]) > 1.5 * np.median([paper_spread(i) for i in mild])


def test_inverted_is_the_digit_dark_on_light_and_nothing_else() -> None:
    for digit, image in zip(SAMPLE[0], grey("inverted")):
        assert np.array_equal(image, 255 - digit)


def test_drawn_digits_are_the_browser_tests_strokes_as_the_pad_draws_them() -> None:
    files, labels = made("drawn")
    assert labels.tolist() == [1, 7, 0, 4, 2, 3]
    images = [np.asarray(Image.open(io.BytesIO(data))) for data in files]
    assert all(image.shape == (560, 560) and image.max() == 255 and image.min() < 40 for image in images)
    varied, varied_labels = made("drawn-varied")
    assert len(varied) == 6 * DRAWN_VARIANTS and len(set(varied)) == len(varied), "every jittered drawing differs"
    assert sorted(set(varied_labels.tolist())) == [0, 1, 2, 3, 4, 7]
    assert sorted(set(made("drawn-habits")[1].tolist())) == [1, 4, 7]


def test_the_benchmark_reads_only_the_test_split(fixtures_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(fixtures_dir / "MNIST" / "raw" / name, raw / name)
    digits, labels = mnist_test_digits(tmp_path)  # no training file present, and none needed
    assert np.array_equal(digits, DIGITS) and np.array_equal(labels, LABELS)


def test_clean_takes_every_digit_and_the_others_one_shared_sample() -> None:
    files = benchmark_files(DIGITS, LABELS, 50, 0, ["clean", "inverted", "blurred-1"])
    assert len(files["clean"][0]) == len(DIGITS)
    assert len(files["inverted"][0]) == 50 and np.array_equal(files["inverted"][1], files["blurred-1"][1])
    inverted = [255 - np.asarray(Image.open(io.BytesIO(data))) for data in files["inverted"][0]]
    assert all(any(np.array_equal(x, d) for d in DIGITS) for x in inverted[:5]), "real test digits"
    again = benchmark_files(DIGITS, LABELS, 50, 0, ["clean", "inverted", "blurred-1"])
    assert all(files[name][0] == again[name][0] for name in files)
