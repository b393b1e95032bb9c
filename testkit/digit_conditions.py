"""The digit robustness benchmark's images: real MNIST test digits, each put through one
real-world degradation at a time and encoded as the file a user would send (PNG or JPEG).

    for condition in CONDITIONS:
        files, labels = condition.make(digits, labels, seed)

numpy and Pillow only, and seeded: the same digits and seed give the same bytes. bench/digits.py
feeds it the MNIST *test* split and nothing in training/ imports it, so none of these images can
reach training (training/batches.py applies the same kinds of transform to training images).
Transforms work on MNIST's own white ink on black unless the condition is about polarity (the
inverted digit, the phone photo, the drawings).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from testkit.fixture_images import encode, read_idx
from testkit.handwriting import DIGITS, HABITS, Stroke, render_like_the_page  # the browser tests' strokes

# Stroke width is changed on the digit enlarged 4x (112 px, as a larger scan or drawing would
# be), where a radius of 4 px is one MNIST pixel; the enlarged image is what is sent.
ENLARGE = 4
DRAWN_VARIANTS = 40  # jittered renderings of each drawn digit

Files = tuple[list[bytes], np.ndarray]
Maker = Callable[[np.ndarray, np.ndarray, np.random.Generator], Files]


@dataclass(frozen=True)
class Condition:
    name: str
    family: str
    description: str
    build: Maker  # (digits N×28×28, labels, rng) -> (encoded files, their labels)

    def make(self, digits: np.ndarray, labels: np.ndarray, seed: int) -> Files:
        """The condition's files: seeded by `seed` and the condition's name, so a condition's
        images do not change when others are added or left out."""
        return self.build(digits, labels, np.random.default_rng([seed, zlib.crc32(self.name.encode())]))


def each_digit(degrade: Callable[[np.ndarray, np.random.Generator], bytes]) -> Maker:
    """A condition made by degrading every MNIST digit on its own; the labels stay."""
    def build(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Files:
        return [degrade(digit, rng) for digit in digits], labels
    return build


# --- the transforms, each on one 8-bit 28×28 digit (white ink on black) --------------------

def enlarge(digit: np.ndarray, factor: int = ENLARGE) -> np.ndarray:
    size = digit.shape[0] * factor
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))


def disc_extreme(image: np.ndarray, radius: int, pick=np.maximum) -> np.ndarray:
    """Grey-level dilation (np.maximum) or erosion (np.minimum) by a disc of `radius` px: the
    disc is a stack of horizontal runs, so this costs about 3 * radius whole-image steps."""
    fill = 0 if pick is np.maximum else 255
    padded = np.pad(image, radius, constant_values=fill)
    h, w = image.shape
    runs = [padded]  # runs[k]: the extreme over a horizontal run of half-width k
    for k in range(1, radius + 1):
        runs.append(pick(runs[-1], pick(np.roll(padded, k, axis=1), np.roll(padded, -k, axis=1))))
    out = np.full(image.shape, fill, image.dtype)
    for dy in range(-radius, radius + 1):
        half = int(np.sqrt(radius * radius - dy * dy))
        out = pick(out, runs[half][radius + dy:radius + dy + h, radius:radius + w])
    return out


def stroke_width(digit: np.ndarray, radius: int) -> np.ndarray:
    """The digit enlarged 4x with strokes `radius` px thicker (dilated) or thinner (eroded, < 0)."""
    big = enlarge(digit)
    return disc_extreme(big, radius) if radius > 0 else disc_extreme(big, -radius, np.minimum)


def binarise(digit: np.ndarray, threshold: int) -> Image.Image:
    """Pure black and white, as a 1-bit image (what a bilevel scan saves)."""
    return Image.fromarray(digit >= threshold).convert("1")


def shrink(digit: np.ndarray, size: int) -> Image.Image:
    """The whole 28 px field reduced to `size` px, anti-aliased, as a thumbnail."""
    return Image.fromarray(digit).resize((size, size), Image.Resampling.LANCZOS)


def ink_box(digit: np.ndarray, level: int = 64) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero((digit >= level).any(1)), np.flatnonzero((digit >= level).any(0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def stretch_to_fill(digit: np.ndarray, strength: float, side: int = 28) -> Image.Image:
    """Cropped to the ink with no margin, its box's aspect pulled towards a square (1.0: fully
    square, as an app that resizes the box to fill the frame does), the longer side `side` px."""
    crop = digit[ink_box(digit)]
    h, w = crop.shape
    aspect = (w / h) ** (1 - strength)  # the new width / height
    width, height = (side, max(1, round(side / aspect))) if aspect >= 1 else (max(1, round(side * aspect)), side)
    return Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC)


def rotate(digit: np.ndarray, degrees: float) -> Image.Image:
    """Rotated anticlockwise by `degrees` (clockwise when negative), corners kept."""
    return Image.fromarray(digit).rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=0)


def shear(digit: np.ndarray, slant: float) -> Image.Image:
    """Slanted: x moves by `slant` * (height above the centre) (> 0 leans right, as italics)."""
    size = digit.shape[0]
    pad = int(np.ceil(abs(slant) * size / 2))
    width = size + 2 * pad
    # Image.transform maps each output pixel back to the input: x_in = x + slant * (y - centre) - pad.
    return Image.fromarray(digit).transform(
        (width, size), Image.Transform.AFFINE, (1, slant, -pad - slant * size / 2, 0, 1, 0),
        Image.Resampling.BICUBIC, fillcolor=0)


def blur(digit: np.ndarray, sigma: float) -> Image.Image:
    return Image.fromarray(digit).filter(ImageFilter.GaussianBlur(sigma))


def phone_photo(digit: np.ndarray, rng: np.random.Generator, *, harsh: bool) -> bytes:
    """Dark ink on paper as a phone photographs it: the digit written about 140 px tall
    somewhere on a 320×240 page lit unevenly (a gradient in a random direction; harsh: steeper,
    dimmer and a soft shadow across the digit), ink that absorbs part of the light, sensor
    grain, a little blur, warm colour, JPEG."""
    width, height, scale = 320, 240, 5
    ink = enlarge(digit, scale).astype(np.float32) / 255
    size = ink.shape[0]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xs / width - 0.5) + np.sin(angle) * (ys / height - 0.5)) * 1.4 + 0.5  # about 0..1
    dim, bright = (110, 235) if harsh else (185, 230)
    light = dim + (bright - dim) * np.clip(ramp, 0, 1)
    top, left = int(rng.integers(10, height - size - 10)), int(rng.integers(10, width - size - 10))
    if harsh:  # a soft-edged shadow whose edge crosses the digit: part in shade, part lit
        cy, cx = top + size / 2, left + size / 2
        edge_angle = rng.uniform(0, 2 * np.pi)
        distance = np.cos(edge_angle) * (xs - cx) + np.sin(edge_angle) * (ys - cy) - rng.uniform(-25, 25)
        light = light * (1 - 0.4 / (1 + np.exp(-distance / 8)))
    absorbed = np.zeros((height, width), np.float32)
    absorbed[top:top + size, left:left + size] = ink * (0.65 if harsh else 0.75)
    page = light * (1 - absorbed) + rng.normal(0, 9 if harsh else 4, (height, width))
    grey = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.4 if harsh else 1.0))
    warm = np.asarray(grey, np.float32)[..., None] * np.array([1.0, 0.96, 0.88], np.float32)
    return encode(np.clip(warm, 0, 255).astype(np.uint8), "JPEG", quality=60 if harsh else 85)


# --- drawn digits: the strokes the browser tests draw, rendered as the page draws them -------

def jitter(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """The same digit drawn again by a hand that is never quite the same: smaller or larger,
    elsewhere on the pad, turned a little, every point a little off."""
    zoom, turn = rng.uniform(0.7, 1.1), np.radians(rng.uniform(-8, 8))
    shift = rng.uniform(-0.08, 0.08, 2)
    cos, sin = np.cos(turn) * zoom, np.sin(turn) * zoom
    out = []
    for stroke in strokes:
        points = np.array(stroke) - 0.5
        points = points @ np.array([[cos, sin], [-sin, cos]]) + 0.5 + shift + rng.normal(0, 0.008, points.shape)
        out.append([tuple(p) for p in np.clip(points, 0.02, 0.98)])
    return out


def drawn(digits: dict[str, tuple[str, list[Stroke]]], variants: int) -> Maker:
    """Each digit as drawn (variants = 0), or `variants` jittered renderings of each."""
    def build(_digits: np.ndarray, _labels: np.ndarray, rng: np.random.Generator) -> Files:
        files, labels = [], []
        for label, strokes in digits.values():
            for _ in range(variants or 1):
                shown = jitter(strokes, rng) if variants else strokes
                files.append(encode(render_like_the_page(shown)))
                labels.append(int(label))
        return files, np.array(labels)
    return build


BROWSER_DIGITS = {digit: (digit, strokes) for digit, strokes in DIGITS.items()}


def _png(transform: Callable[..., Image.Image | np.ndarray], *args) -> Maker:
    return each_digit(lambda digit, _rng: encode(transform(digit, *args)))


CONDITIONS: list[Condition] = [
    Condition("clean", "clean", "the MNIST test digit as a PNG", _png(lambda d: d)),
    Condition("thin-1", "stroke width", "strokes eroded by a disc of 2 px at 112 px (half an MNIST pixel)",
              _png(stroke_width, -2)),
    Condition("thin-2", "stroke width", "eroded by 4 px at 112 px: a hairline pen", _png(stroke_width, -4)),
    Condition("thick-1", "stroke width", "dilated by 4 px at 112 px (one MNIST pixel)", _png(stroke_width, 4)),
    Condition("thick-2", "stroke width", "dilated by 8 px at 112 px: a marker", _png(stroke_width, 8)),
    Condition("binarised-25", "binarisation", "1-bit PNG, ink where >= 25 % (thicker)", _png(binarise, 64)),
    Condition("binarised-50", "binarisation", "1-bit PNG, ink where >= 50 %", _png(binarise, 128)),
    Condition("binarised-75", "binarisation", "1-bit PNG, ink where >= 75 % (thinner)", _png(binarise, 192)),
    Condition("small-16", "resolution", "the field shrunk to 16x16 px and sent at that size", _png(shrink, 16)),
    Condition("small-12", "resolution", "shrunk to 12x12 px", _png(shrink, 12)),
    Condition("small-8", "resolution", "shrunk to 8x8 px", _png(shrink, 8)),
    Condition("stretched-half", "stretched", "cropped to the ink, no margin, aspect halfway to square",
              _png(stretch_to_fill, 0.5)),
    Condition("stretched-full", "stretched", "cropped to the ink and resized to a 28x28 square",
              _png(stretch_to_fill, 1.0)),
    Condition("rotated-ccw-15", "rotation", "rotated 15 degrees anticlockwise", _png(rotate, 15)),
    Condition("rotated-cw-15", "rotation", "rotated 15 degrees clockwise", _png(rotate, -15)),
    Condition("sheared-right-0.3", "shear", "slanted right by 0.3 (17 degrees)", _png(shear, 0.3)),
    Condition("sheared-left-0.3", "shear", "slanted left by 0.3 (17 degrees)", _png(shear, -0.3)),
    Condition("blurred-1", "blur", "Gaussian blur, sigma 1 px", _png(blur, 1.0)),
    Condition("blurred-2", "blur", "Gaussian blur, sigma 2 px", _png(blur, 2.0)),
    Condition("jpeg-50", "JPEG", "JPEG at quality 50", each_digit(lambda d, _: encode(d, "JPEG", quality=50))),
    Condition("jpeg-35", "JPEG", "JPEG at quality 35", each_digit(lambda d, _: encode(d, "JPEG", quality=35))),
    Condition("jpeg-20", "JPEG", "JPEG at quality 20", each_digit(lambda d, _: encode(d, "JPEG", quality=20))),
    Condition("photo-mild", "phone photo", "dark ink on a 320x240 page, gentle light gradient, grain, JPEG 85",
              each_digit(lambda d, rng: phone_photo(d, rng, harsh=False))),
    Condition("photo-harsh", "phone photo", "steep gradient, a shadow across the digit, more grain, JPEG 60",
              each_digit(lambda d, rng: phone_photo(d, rng, harsh=True))),
    Condition("inverted", "polarity", "dark ink on a light background, nothing else", _png(lambda d: 255 - d)),
    Condition("drawn", "drawn on the page", "the browser tests' six digits, rendered as the pad draws them",
              drawn(BROWSER_DIGITS, 0)),
    Condition("drawn-varied", "drawn on the page",
              f"each of those {DRAWN_VARIANTS} times, jittered (size, place, turn, wobble)",
              drawn(BROWSER_DIGITS, DRAWN_VARIANTS)),
    Condition("drawn-habits", "drawn on the page",
              f"a flagged and footed 1, a crossed 7, a closed 4, {DRAWN_VARIANTS} jittered each",
              drawn(HABITS, DRAWN_VARIANTS)),
]
BY_NAME = {condition.name: condition for condition in CONDITIONS}


def mnist_test_digits(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST *test* split only (t10k): the benchmark never reads a training image."""
    raw = data_dir / "MNIST" / "raw"
    return read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte")


def benchmark_files(digits: np.ndarray, labels: np.ndarray, sample: int, seed: int,
                    names: list[str]) -> dict[str, tuple[list[bytes], np.ndarray]]:
    """Every condition's encoded files: clean from the whole set, the others from one seeded sample."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(digits), min(sample, len(digits)), replace=False))
    files = {}
    for name in names:
        condition: Condition = BY_NAME[name]
        pool = (digits, labels) if name == "clean" else (digits[chosen], labels[chosen])
        files[name] = condition.make(*pool, seed)
    return files
