"""A decoded image -> the model's input, as the card's preprocessing kind says, then mean/std.

`KINDS` is the one table of kinds: what each decodes to, which inputs it can fill, the
function that makes the field, and how the web page offers its models. The card's kind is
checked against it, and /models tells the page the kind's input method, so a new kind is one
row here (and its test).

Digits follow the procedure MNIST itself used (LeCun et al.): white ink on black, cropped
to the ink, the longer side scaled to 20 px with anti-aliasing, centred by centre of mass
in a 28x28 field. So a photo of a digit on paper, or a large off-centre drawing, reaches
the model looking like an MNIST digit. Around that procedure, what users send and MNIST never
held: a thumbnail is enlarged to the field's size first, a page lit unevenly or in shadow has
its light divided out, and strokes far thinner, thicker or softer than MNIST's are brought into
its range last (service/strokes.py).
Photos are resized to the input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from modelrepo.card import Card
from service.images import load, open_image
from service import strokes
from service.strokes import mnist_strokes, takes_native

# MNIST's geometry: the digit's bounding box fits 20x20 inside the 28x28 field.
DIGIT_BOX_FRACTION = 20 / 28
# After the background is mapped to 0 and the ink to 1: below NOISE_FLOOR is paper grain or
# uneven light, not ink; the bounding box counts only pixels above INK_LEVEL, so faint
# smudges far from the digit do not stretch it.
NOISE_FLOOR = 0.1
INK_LEVEL = 0.3
# An enlarged thumbnail's box is found lower on its soft edges: the box comes out a little wider,
# the digit a little smaller in the field, and the models read more of them. Chosen on the last
# 10,000 MNIST *training* digits shrunk to 8 px: residual-mnist 97.55 -> 97.80 %, preact-residual
# 96.92 -> 97.24 % (at 12 and 16 px within 0.1 point either way).
THUMBNAIL_INK_LEVEL = 0.2
# Less contrast than this between background and ink: a blank image, passed on as blank.
MIN_CONTRAST = 0.1


@dataclass(frozen=True)
class InputSpec:
    """What one model expects, read from its card."""

    kind: str  # a key of KINDS
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_card(cls, card: Card) -> InputSpec:
        if len(card.input.shape) != 3:
            raise ValueError(f"input shape {card.input.shape} is not [C, H, W]")
        channels, height, width = card.input.shape
        prep = card.preprocessing
        spec = cls(kind=prep.kind, channels=channels, height=height, width=width,
                   mean=tuple(prep.mean), std=tuple(prep.std))
        kind = KINDS.get(spec.kind)
        if kind is None:
            raise ValueError(f"preprocessing.kind {spec.kind!r} is none of {', '.join(map(repr, KINDS))}")
        if channels not in kind.channels:
            raise ValueError(f"{spec.kind!r} preprocessing fills {' or '.join(map(str, kind.channels))}-channel "
                             f"inputs, not {channels}")
        if len(spec.mean) != channels or len(spec.std) != channels:
            raise ValueError(f"input has {channels} channels but mean/std have "
                             f"{len(spec.mean)}/{len(spec.std)} values")
        if any(s <= 0 for s in spec.std):
            raise ValueError(f"std {list(spec.std)} must be positive")
        return spec

    @cached_property
    def normalised_levels(self) -> np.ndarray:
        """C×256 float32: channel, 8-bit level -> (level / 255 - mean) / std."""
        levels = np.arange(256, dtype=np.float64) / 255
        return np.stack([(levels - m) / s for m, s in zip(self.mean, self.std)]).astype(np.float32)


def preprocess(data: bytes, spec: InputSpec, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> float32 C×H×W, normalised with the card's mean/std."""
    return preprocess_image(open_image(data, max_pixels), spec)


def preprocess_image(opened: Image.Image, spec: InputSpec) -> np.ndarray:
    """An image from `images.open_image` -> float32 C×H×W, normalised with the card's mean/std."""
    image = load(opened, mode="L" if spec.channels == 1 else "RGB")
    return normalise(KINDS[spec.kind].field(image, spec.height, spec.width), spec)


def preprocess_pixels(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded 8-bit pixels (H×W grey or H×W×3 RGB: `service.tiny_png`) -> what
    `preprocess_image` gives for the same image, without making a Pillow image of it."""
    if spec.channels == 1 and pixels.ndim == 3:  # Pillow's own conversion, to the bit
        pixels = np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    elif spec.channels == 3 and pixels.ndim == 2:  # Pillow's L -> RGB: the level in each channel
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return normalise(KINDS[spec.kind].pixels_field(pixels, spec.height, spec.width), spec)


def normalise(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """8-bit H×W or H×W×C -> C×H×W float32: x / 255, then (x - mean) / std per channel."""
    levels = spec.normalised_levels  # one lookup per pixel (`take`: a third of fancy indexing's time)
    if pixels.ndim == 2:
        return levels[0].take(pixels)[None]
    return np.stack([levels[c].take(pixels[:, :, c]) for c in range(spec.channels)])


def to_pixels(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """`normalise` undone: C×H×W model input -> 8-bit H×W (one channel) or H×W×C pixels."""
    mean = np.array(spec.mean, np.float32)[:, None, None]
    std = np.array(spec.std, np.float32)[:, None, None]
    pixels = np.clip(np.rint((x * std + mean) * 255), 0, 255).astype(np.uint8)
    return pixels[0] if spec.channels == 1 else pixels.transpose(1, 2, 0)


def photo_field(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize to the input size (Lanczos, so shrinking is anti-aliased): H×W×C, 8-bit."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(image)


def _photo_pixels_field(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    return pixels if pixels.shape[:2] == (height, width) else photo_field(Image.fromarray(pixels), height, width)


# The digit procedure works on 8-bit pixels, as MNIST's own digits were made, with few and
# whole-array steps: a small digit costs about a tenth of a millisecond.

def digit_field(gray: np.ndarray, height: int = 28, width: int = 28) -> np.ndarray:
    """An 8-bit greyscale H×W image of one digit -> an MNIST-style 8-bit height×width field."""
    thumbnail = max(gray.shape) < max(height, width)
    if thumbnail:
        gray = _enlarged(gray, max(height, width))
    gray, light, tones = _page(gray)
    levels = _ink_levels(gray, light, tones)
    if levels is None:  # a blank page: passed on as a blank field
        return np.zeros((height, width), np.uint8)
    digit = _ink_box(gray, levels.ink, levels.sure_in_thumbnail if thumbnail else levels.sure)
    box = round(DIGIT_BOX_FRACTION * min(height, width))
    if max(digit.shape) != box:  # already its box's size (most MNIST-style fields): no resampling
        scale = box / max(digit.shape)
        size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
        digit = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS))
    # A thumbnail's strokes are as soft as enlarging makes them, which is what the models were
    # trained on (training/batches.py's resolution loss); "sharpening" them loses points.
    return _centre_by_mass(digit if thumbnail else mnist_strokes(digit), height, width)


def _enlarged(gray: np.ndarray, side: int) -> np.ndarray:
    """A thumbnail (8-16 px) enlarged, bicubic, until its longer side is `side`: the ink's box is
    then found to a fraction of the thumbnail's pixel, where on the thumbnail itself one pixel
    of error is an eighth of the digit (measured on 2,000 MNIST test digits shrunk to 8 px,
    residual-mnist: 94.0 % without this, 96.9 % with it)."""
    scale = side / max(gray.shape)
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BICUBIC))


# --- Polarity and lighting ------------------------------------------------------------------
# A small image's frame is its background (a thumbnail, a scan, a digit cropped to its box).
# On a large page lit unevenly the frame may be in shadow and darker than ink in the light, so
# there the ink is found by local contrast: it is where the page departs most from its blurred
# self, darker (ink on paper) or lighter (chalk, MNIST). Dark ink on a light page is then divided
# by the paper's own brightness, which takes out gradients and shadows.
LARGE_PAGE_PX = 64  # both sides at least this: a page that may be lit unevenly
PAGE_SIDE_PX = 64  # large pages are judged reduced to about this size (cheap)
# At that size, a window wider than any stroke (a digit filling the page has strokes of about
# an eighth of it), so the paper estimate holds no ink.
PAPER_WINDOW_PX = 11
EVEN_LIGHT = 0.85  # darkest / brightest paper above this: lit evenly enough, left alone
# A frame half ink, half background (a digit stretched to fill it) is ambiguous: it counts as
# light only when clearly so, else MNIST's own polarity is assumed.
FRAME_LIGHT = 0.6


@dataclass(frozen=True)
class _Tones:
    """The histogram's median, and the darkest and brightest levels that a few pixels reach
    (so one speck of dust or one hot pixel does not pass for ink)."""

    median: int
    darkest: int
    brightest: int

    @classmethod
    def of(cls, gray: np.ndarray) -> _Tones:
        if takes_native(gray):
            median, darkest, brightest = strokes.native.tones(gray)
            return cls(median=median, darkest=darkest, brightest=brightest)
        cumulative = np.bincount(gray.ravel(), minlength=256).cumsum()
        pixels = gray.size
        few = max(4, pixels // 2000)
        median, darkest, brightest = np.searchsorted(cumulative, (pixels // 2 + 1, few, pixels - few + 1)).tolist()
        return cls(median=median, darkest=darkest, brightest=brightest)

    def is_light(self, level: int, above: float = 0.5) -> bool:
        """Whether `level` lies above `above` of the way from the darkest to the brightest."""
        return level > self.darkest + above * (self.brightest - self.darkest)


def _frame_level(gray: np.ndarray) -> int:
    """The median of the image's outer band (a fourteenth of its shorter side, at least 1 px)."""
    if takes_native(gray):
        return strokes.native.frame_level(gray)
    band = max(1, min(gray.shape) // 14)
    frame = np.concatenate([gray[:band].ravel(), gray[-band:].ravel(),
                            gray[band:-band, :band].ravel(), gray[band:-band, -band:].ravel()])
    return int(np.partition(frame, len(frame) // 2)[len(frame) // 2])


def _page(gray: np.ndarray) -> tuple[np.ndarray, bool, _Tones]:
    """(the image, True if its ink is darker than its background, its tones); a large light
    page comes back with its uneven light taken out."""
    if min(gray.shape) < LARGE_PAGE_PX:
        tones = _Tones.of(gray)
        return gray, tones.is_light(_frame_level(gray), above=FRAME_LIGHT), tones
    reduced = Image.fromarray(gray)
    factor = min(gray.shape) // PAGE_SIDE_PX
    reduced = np.asarray(reduced.reduce(factor) if factor > 1 else reduced)
    light = _ink_is_dark(reduced)
    if light:
        paper = _paper_level(reduced)
        if paper.min() < EVEN_LIGHT * paper.max():
            paper = np.asarray(Image.fromarray(paper).resize(gray.shape[::-1], Image.Resampling.BILINEAR), np.float32)
            gray = np.clip(gray * (255 / np.maximum(paper, 1)), 0, 255).astype(np.uint8)
    return gray, light, _Tones.of(gray)


def _ink_is_dark(reduced: np.ndarray) -> bool:
    """Whether the strongest local departures from the blurred page are dark ones."""
    blurred = Image.fromarray(reduced).filter(ImageFilter.GaussianBlur(min(reduced.shape) / 3))
    departure = reduced.astype(np.float32) - np.asarray(blurred, np.float32)
    low, high = np.percentile(departure, (0.5, 99.5))
    return -low > high


def _paper_level(reduced: np.ndarray) -> np.ndarray:
    """The paper's brightness under each pixel: a grey-level closing (the max, then the min, over
    a PAPER_WINDOW_PX square) fills in every stroke narrower than the window and keeps steps and
    slopes of the light. Padded once for both steps, so slopes run true to the image's edges."""
    r = PAPER_WINDOW_PX // 2
    padded = np.pad(reduced, 2 * r, mode="edge")
    return _valid_rank(_valid_rank(padded, PAPER_WINDOW_PX, np.maximum), PAPER_WINDOW_PX, np.minimum)


def _valid_rank(image: np.ndarray, size: int, pick: np.ufunc) -> np.ndarray:
    """Max or min over each size×size window that fits (the result is size - 1 smaller), separably."""
    rows = pick.reduce([image[i:i + image.shape[0] - size + 1] for i in range(size)])
    return pick.reduce([rows[:, i:i + image.shape[1] - size + 1] for i in range(size)])


@dataclass(frozen=True)
class _Levels:
    ink: np.ndarray  # grey level -> ink, 0 (background) to 255 (the strongest ink)
    sure: np.ndarray  # grey level -> True where it is surely ink (for the bounding box)
    sure_in_thumbnail: np.ndarray  # the same, in an enlarged thumbnail


def _ink_levels(gray: np.ndarray, light: bool, tones: _Tones) -> _Levels | None:
    """Lookup tables taking background to 0 and ink to 255 (None for a blank page). The
    background level is the median, unless ink covers more than half the image (a digit
    stretched to fill its frame): then it is the frame's."""
    level = tones.median if tones.is_light(tones.median) == light else _frame_level(gray)
    if light:
        return _levels(light, 255 - level, 255 - tones.darkest)
    return _levels(light, level, tones.brightest)


@lru_cache(maxsize=4096)  # most pages share a few (polarity, background, ink) triples
def _levels(light: bool, background: int, strongest: int) -> _Levels | None:
    if strongest - background < MIN_CONTRAST * 255:
        return None
    ink = np.arange(256, dtype=np.float32)[::-1] if light else np.arange(256, dtype=np.float32)
    ink = np.clip((ink - background) / (strongest - background), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    return _Levels(ink=np.rint(ink * 255).astype(np.uint8), sure=ink > INK_LEVEL,
                   sure_in_thumbnail=ink > THUMBNAIL_INK_LEVEL)


def _ink_box(gray: np.ndarray, ink_levels: np.ndarray, sure_levels: np.ndarray) -> np.ndarray:
    """The ink (`ink_levels[gray]`) cropped to the box of the pixels that are surely ink. There is
    always one: the strongest levels map to full ink (`_levels`)."""
    if takes_native(gray):
        found = strokes.native.ink_box(gray, ink_levels, sure_levels)
        if found is not None:
            return _array(found)
    sure = sure_levels[gray]
    rows, cols = np.flatnonzero(sure.any(axis=1)), np.flatnonzero(sure.any(axis=0))
    return ink_levels[gray][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _array(found: tuple[bytearray, int, int]) -> np.ndarray:
    """A (bytes, height, width) answer of the C module as an 8-bit height×width array."""
    pixels, height, width = found
    return np.frombuffer(pixels, np.uint8).reshape(height, width)


def _centre_by_mass(digit: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paste `digit` into a height×width field with its centre of mass at the centre."""
    if takes_native(digit):
        return _array(strokes.native.centre_by_mass(digit, height, width))
    rows, cols = digit.sum(axis=1).tolist(), digit.sum(axis=0).tolist()  # exact integers
    mass = sum(rows)
    cy = sum(i * r for i, r in enumerate(rows)) / mass if mass else (len(rows) - 1) / 2
    cx = sum(i * c for i, c in enumerate(cols)) / mass if mass else (len(cols) - 1) / 2
    # MNIST puts the centre of mass at pixel index 14 of 28 (mean 13.98 over the test fixtures,
    # not the geometric 13.5): do as it did, or every digit arrives half a pixel off.
    top, left = round(height / 2 - cy), round(width / 2 - cx)
    field = np.zeros((height, width), np.uint8)
    # Paste with clipping: a lopsided digit may push part of its box past the edge, as in MNIST.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + digit.shape[0], height), min(left + digit.shape[1], width)
    if y1 > y0 and x1 > x0:
        field[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
    return field


def _digit_field_of(image: Image.Image, height: int, width: int) -> np.ndarray:
    return digit_field(np.asarray(image), height, width)


@dataclass(frozen=True)
class Kind:
    """One way of turning an uploaded image into a model's input."""

    field: Callable[[Image.Image, int, int], np.ndarray]  # decoded image, H, W -> 8-bit field
    pixels_field: Callable[[np.ndarray, int, int], np.ndarray]  # the same from the image's 8-bit pixels
    channels: tuple[int, ...]  # input channel counts it can fill (1: greyscale "L", 3: "RGB")
    input_method: Literal["draw", "upload"]  # how the web page asks for an image


KINDS: dict[str, Kind] = {
    # MNIST's own procedure: a digit drawn on the page, or a photo of one on paper.
    "digit": Kind(_digit_field_of, digit_field, channels=(1,), input_method="draw"),
    # A photo resized to the input: CIFAR-10's 32x32 colour images.
    "photo": Kind(photo_field, _photo_pixels_field, channels=(1, 3), input_method="upload"),
}
