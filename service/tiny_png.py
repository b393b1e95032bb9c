"""The plainest small PNGs decoded without Pillow: an MNIST digit as a client sends it.

Pillow spends ~30 µs of Python on a 28x28 PNG (its plugin's chunk reader, `ImageFile.load`),
more than the digit's whole preprocessing; the file itself is three chunks and 300 bytes of
zlib. So a PNG that is 8-bit greyscale or RGB, not interlaced, at most 64x64, with nothing in
it that could change its pixels (no transparency, palette, text or EXIF: service/_tinypng.c
lists what it accepts) is read here: its chunks and CRCs checked in C, its data inflated by
zlib, its rows unfiltered in C. Its pixels are the ones Pillow would decode, to the bit
(tests/service/test_tiny_png.py). Anything else, or anything wrong, is None: Pillow reads the
file as before (`service.images`), with every check and error it has.
"""

from __future__ import annotations

import zlib

import numpy as np

try:  # built by setup.py; without a C compiler every PNG goes to Pillow
    from service import _tinypng as native
except ImportError:
    native = None


def decode(data: bytes) -> np.ndarray | None:
    """The pixels of a plain small PNG (H×W grey or H×W×3 RGB, uint8), or None."""
    if native is None:
        return None
    parsed = native.parse(data)
    if parsed is None:
        return None
    width, height, channels, idat = parsed
    expected = height * (1 + width * channels)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(idat, expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        return None  # short, long or trailing data: Pillow's to judge
    pixels = native.unfilter(raw, width, height, channels)
    if pixels is None:
        return None
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.frombuffer(pixels, np.uint8).reshape(shape)
