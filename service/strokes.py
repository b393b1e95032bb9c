"""A digit's strokes brought into the range of MNIST's own, once it is scaled to its 20-px box.

Users' pens are not MNIST's. A hairline, scaled down, leaves a faint line a pixel wide; a
marker fills the loops. The models never saw such strokes, so a digit whose stroke width
MNIST's training digits reach less than 1 % of the time is brought to the nearest end of their
range: thickened or thinned. A blurred photo's soft, wide strokes are not a marker's: they are
left soft (only their strength is stretched), as the models were trained on blurred digits
(training/batches.py); sharpening them cost about 2 points at blur sigma 2 (docs/results.md).
Strokes MNIST has are left exactly as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:  # the per-pixel steps of the digit procedure in C (built by setup.py: service/_digitfield.c)
    from service import _digitfield as native
except ImportError:  # no C compiler at install: numpy does them, to the same bit, slower (make bench-stages)
    native = None

# Stroke width (2 * ink / edge length, in field pixels) of MNIST's training digits after the
# digit procedure: 1.17 at the 1st percentile, 1.95 the median, 3.67 at the 99th.
THINNEST, THICKEST = 1.2, 3.6
# The strongest 2 % of the box's pixels are taken as full-strength ink: a hairline scaled down
# is faint, and MNIST's strokes are not. Above FULL_STRENGTH they are left as they are.
STRONGEST_SHARE = 0.02
FULL_STRENGTH = 230
# Fewer than this share of the ink at over 90 % strength: soft (blurred), not a marker.
SOFT = 0.2
MAX_STEPS = 3  # at most this many pixels thicker or thinner


def mnist_strokes(digit: np.ndarray) -> np.ndarray:
    """An 8-bit digit box (white ink on black) with strokes of MNIST's strength and width."""
    strongest = _strongest(digit)
    width = stroke_width(digit)  # the same at any strength
    if THINNEST <= width <= THICKEST and strongest >= FULL_STRENGTH:
        return digit  # as MNIST's own: unchanged, to the bit (and no float work)
    ink = np.clip(digit.astype(np.float32) / max(min(int(strongest), 255), 1), 0, 1)
    if width < THINNEST:
        ink = towards_width(ink, THINNEST, dilate)
    elif width > THICKEST and not is_soft(ink):  # a marker; a soft (blurred) digit is left soft
        ink = towards_width(ink, THICKEST, erode)
    return np.rint(ink * 255).astype(np.uint8)


def takes_native(pixels: np.ndarray) -> bool:
    """Whether the C module is built and can read `pixels` (C-contiguous, 2-D, 8-bit)."""
    return native is not None and pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.flags.c_contiguous


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: a stroke of width w and length l holds w * l of ink and has
    2 * l of edge (summed |gradient|, so anti-aliased edges count in full; the box's own border
    counts as background)."""
    if takes_native(ink):
        width = native.stroke_width(ink)
        if width is not None:  # None: sums past float32's exact integers (a box far over 20 px)
            return width
    framed = np.zeros((ink.shape[0] + 2, ink.shape[1] + 2), np.float32)
    framed[1:-1, 1:-1] = ink
    edge = float(np.abs(np.diff(framed, axis=0)).sum() + np.abs(np.diff(framed, axis=1)).sum())
    return 2 * float(framed.sum()) / edge if edge > 0 else 0.0


def _strongest(ink: np.ndarray):
    """The level the strongest few pixels reach (STRONGEST_SHARE, at least 4 of them)."""
    k = min(ink.size, max(4, round(ink.size * STRONGEST_SHARE)))
    if takes_native(ink):
        return native.kth_largest(ink, k)
    return np.partition(ink.ravel(), -k)[-k]


def full_strength(ink: np.ndarray) -> np.ndarray:
    strongest = _strongest(ink)
    return np.clip(ink / strongest, 0, 1) if strongest > 0 else ink


def is_soft(ink: np.ndarray) -> bool:
    return (ink > 0.9).sum() < SOFT * (ink > 0.1).sum()


def dilate(ink: np.ndarray) -> np.ndarray:
    """Grey-level dilation by a 3-px cross (4-neighbours)."""
    p = np.pad(ink, 1)
    return np.maximum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])


def erode(ink: np.ndarray) -> np.ndarray:
    p = np.pad(ink, 1)
    return np.minimum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])


def towards_width(ink: np.ndarray, target: float, step: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Dilate or erode a pixel at a time until the width reaches `target`, blending the last
    step so that it lands there (the strongest ink kept at full strength throughout)."""
    width = stroke_width(ink)
    for _ in range(MAX_STEPS):
        moved = full_strength(step(ink))
        moved_width = stroke_width(moved)
        if not moved.any() or moved_width == width:
            return ink
        if (moved_width - target) * (width - target) <= 0:  # the target lies within this step
            return ink + (target - width) / (moved_width - width) * (moved - ink)
        ink, width = moved, moved_width
    return ink
