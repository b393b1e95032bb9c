"""The digit procedure's C steps (service/_digitfield.c) against the numpy code they replace:
the same answers to the bit, on real digits, on every condition users send, and on odd shapes."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import numpy as np
import pytest
from PIL import Image

from service import preprocess, strokes
from testkit import digit_conditions as conditions
from testkit.fixture_images import cifar_test, ink_on_paper, mnist_test, photo_of_paper


def by_numpy(step, *args):
    """`step(*args)` as an install without the C module computes it."""
    saved = strokes.native
    strokes.native = None
    try:
        return step(*args)
    finally:
        strokes.native = saved


def test_the_c_module_is_built() -> None:
    # setup.py builds it as optional (an install without a compiler still works); a suite run
    # without it would test only the numpy path, so here its absence is a failure.
    assert strokes.native is not None, "service._digitfield is not built: `pip install -e .` with a C compiler"


def odd_images(rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shapes and level mixes the procedure's slicing and histograms must get right."""
    for shape in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 30), (13, 29), (28, 28), (63, 64), (64, 63), (100, 37)]:
        yield rng.integers(0, 256, shape, dtype=np.uint8)  # noise
        yield np.full(shape, int(rng.integers(0, 256)), np.uint8)  # one level
        yield np.where(rng.random(shape) < 0.1, 255, 0).astype(np.uint8)  # sparse specks
        yield np.where(rng.random(shape) < 0.9, 200, 30).astype(np.uint8)  # mostly light


@cache
def real_images() -> tuple[np.ndarray, ...]:
    digits, _ = mnist_test()
    rng = np.random.default_rng(5)
    images = list(digits[:250])
    for digit in digits[250:280]:  # what users send: thumbnails, pages, photos, odd pens
        images += [np.asarray(conditions.shrink(digit, 10)), np.asarray(conditions.stretch_to_fill(digit, 1.0)),
                   np.asarray(conditions.blur(digit, 2.0)), conditions.stroke_width(digit, 3),
                   conditions.stroke_width(digit, -1), np.asarray(conditions.binarise(digit, 128).convert("L")),
                   np.asarray(ink_on_paper(digit, rng)), np.asarray(photo_of_paper(digit, rng).convert("L"))]
    images += [np.asarray(Image.fromarray(photo).convert("L")) for photo in cifar_test()[0][:30]]
    assert all(strokes.takes_native(image) for image in images)
    return tuple(images)


def test_each_step_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for gray in [*odd_images(rng), *real_images()]:
        assert preprocess._Tones.of(gray) == by_numpy(preprocess._Tones.of, gray)
        assert preprocess._frame_level(gray) == by_numpy(preprocess._frame_level, gray)
        assert strokes.stroke_width(gray) == by_numpy(strokes.stroke_width, gray)
        assert strokes._strongest(gray) == by_numpy(strokes._strongest, gray)
        for height, width in [(28, 28), (20, 36)]:
            np.testing.assert_array_equal(preprocess._centre_by_mass(gray, height, width),
                                          by_numpy(preprocess._centre_by_mass, gray, height, width))
        levels = preprocess._levels(False, int(rng.integers(0, 100)), int(rng.integers(150, 256)))
        if levels is not None and levels.sure[gray].any():
            np.testing.assert_array_equal(preprocess._ink_box(gray, levels.ink, levels.sure),
                                          by_numpy(preprocess._ink_box, gray, levels.ink, levels.sure))


def test_the_whole_field_matches_numpy() -> None:
    fields = 0
    for gray in real_images():
        fast = preprocess.digit_field(gray)
        assert fast.flags.writeable and fast.dtype == np.uint8 and fast.shape == (28, 28)
        np.testing.assert_array_equal(fast, by_numpy(preprocess.digit_field, gray))
        fields += int(fast.any())
    assert fields > 450, "the images made real digit fields, not blanks"


def test_arrays_the_c_module_cannot_read_go_to_numpy() -> None:
    digit = mnist_test()[0][0]
    # Not contiguous, and not 8-bit: the same answers as numpy's, by numpy.
    assert not strokes.takes_native(digit[:, ::2]) and not strokes.takes_native(digit.astype(np.int32))
    assert preprocess._Tones.of(digit[:, ::2]) == by_numpy(preprocess._Tones.of, np.ascontiguousarray(digit[:, ::2]))
    assert strokes.stroke_width(digit.astype(np.float32)) == by_numpy(strokes.stroke_width, digit)
    with pytest.raises(TypeError, match="uint8"):
        strokes.native.tones(digit.astype(np.int32))
