"""A decoded image -> the model's input, as the card says: "digit" or "photo", then mean/std.

Digits follow the procedure MNIST itself used (LeCun et al.): white ink on black, cropped
to the ink, the longer side scaled to 20 px with anti-aliasing, centred by centre of mass
in a 28x28 field. So a photo of a digit on paper, or a large off-centre drawing, reaches
the model looking like an MNIST digit. Photos are resized to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from service.images import decode
from service.schemas import Card

# MNIST's geometry: the digit's bounding box fits 20x20 inside the 28x28 field.
DIGIT_BOX_FRACTION = 20 / 28
# After the background is mapped to 0 and the ink to 1: below NOISE_FLOOR is paper grain or
# uneven light, not ink; the bounding box counts only pixels above INK_LEVEL, so faint
# smudges far from the digit do not stretch it.
NOISE_FLOOR = 0.1
INK_LEVEL = 0.3
# Less contrast than this between background and ink: a blank image, passed on as blank.
MIN_CONTRAST = 0.1


@dataclass(frozen=True)
class InputSpec:
    """What one model expects, read from its card."""

    kind: str  # "digit" or "photo"
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
        if spec.kind not in ("digit", "photo"):
            raise ValueError(f"preprocessing.kind {spec.kind!r} is neither 'digit' nor 'photo'")
        if channels not in (1, 3) or len(spec.mean) != channels or len(spec.std) != channels:
            raise ValueError(f"input has {channels} channels but mean/std have "
                             f"{len(spec.mean)}/{len(spec.std)} values")
        if any(s <= 0 for s in spec.std):
            raise ValueError(f"std {list(spec.std)} must be positive")
        if spec.kind == "digit" and channels != 1:
            raise ValueError("digit preprocessing needs a 1-channel input")
        return spec


def preprocess(data: bytes, spec: InputSpec, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> float32 C×H×W, normalised with the card's mean/std."""
    image = decode(data, max_pixels, mode="L" if spec.channels == 1 else "RGB")
    if spec.kind == "digit":
        pixels = digit_field(np.asarray(image), spec.height, spec.width)
    else:
        pixels = photo_field(image, spec.height, spec.width)
    return normalise(pixels, spec)


def normalise(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """H×W or H×W×C values in [0, 1] -> C×H×W float32, (x - mean) / std per channel."""
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((chw.astype(np.float32) - mean) / std)


def photo_field(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize to the input size (Lanczos, so shrinking is anti-aliased); values in [0, 1]."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(image, dtype=np.float32) / 255.0


def digit_field(gray: np.ndarray, height: int = 28, width: int = 28) -> np.ndarray:
    """An 8-bit greyscale H×W image of one digit -> an MNIST-style field, values in [0, 1]."""
    ink = _ink_map(gray)
    if ink is None:
        return np.zeros((height, width), dtype=np.float32)
    rows = np.flatnonzero((ink > INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink > INK_LEVEL).any(axis=0))
    digit = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return _centre_by_mass(_fit_box(digit, round(DIGIT_BOX_FRACTION * min(height, width))),
                           height, width)


def _ink_map(gray: np.ndarray) -> np.ndarray | None:
    """Background -> 0, ink -> 1, whatever the polarity and lighting; None when blank."""
    values = gray.astype(np.float32) * (1.0 / 255.0)
    background = float(np.median(values))
    light = background > 0.5  # ink on paper; MNIST is white ink on black
    if light:
        values = 1.0 - values
        background = 1.0 - background
    # The strongest ink after a 3x3 median filter (on a reduced copy of a big image, for
    # speed), so one dark speck of dust does not pass for the ink.
    smoothed = Image.fromarray(gray)
    if max(smoothed.size) > 256:
        smoothed = smoothed.reduce(max(smoothed.size) // 256 + 1)
    smoothed = np.asarray(smoothed.filter(ImageFilter.MedianFilter(3)))
    strongest = (255 - float(smoothed.min()) if light else float(smoothed.max())) / 255.0
    if strongest - background < MIN_CONTRAST:
        return None
    ink = np.clip((values - background) / (strongest - background), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    if not (ink > INK_LEVEL).any():
        return None
    return ink


def _fit_box(digit: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is `box` pixels, keeping the aspect ratio (anti-aliased)."""
    h, w = digit.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _centre_by_mass(digit: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paste `digit` into a height×width field with its centre of mass at the centre."""
    mass = float(digit.sum())
    ys, xs = np.indices(digit.shape)
    cy = float((ys * digit).sum()) / mass if mass else (digit.shape[0] - 1) / 2
    cx = float((xs * digit).sum()) / mass if mass else (digit.shape[1] - 1) / 2
    # MNIST puts the centre of mass at pixel index 14 of 28 (mean 13.98 over the test fixtures,
    # not the geometric 13.5): do as it did, or every digit arrives half a pixel off.
    top = round(height / 2 - cy)
    left = round(width / 2 - cx)
    field = np.zeros((height, width), dtype=np.float32)
    # Paste with clipping: a lopsided digit may push part of its box past the edge, as in MNIST.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + digit.shape[0], height), min(left + digit.shape[1], width)
    if y1 > y0 and x1 > x0:
        field[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
    return field
