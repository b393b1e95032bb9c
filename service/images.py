"""Untrusted bytes -> a decoded, upright, opaque Pillow image (8-bit L or RGB).

Pillow parses every format it knows; this module makes each way that can go wrong a typed
error (`UnsupportedImage` 415, `CorruptImage` 422, `TooManyPixels` 413) and never lets a
hostile file cost more than `max_pixels` of memory.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import CorruptImage, ServiceError, TooManyPixels, UnsupportedImage

log = logging.getLogger("service.images")

# Nothing downstream needs more than this: digits are centred into 20 px, photos resized to
# 32 px. Bigger images are shrunk to it as they are decoded (JPEG straight at a reduced scale,
# with Image.draft; others by box averaging), so a 12-megapixel photo costs little more.
WORKING_SIZE = 1024

_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def decode(data: bytes, max_pixels: int, mode: str) -> Image.Image:
    """Decode `data` into an upright image of `mode` ("L" or "RGB"), transparency on white."""
    return load(open_image(data, max_pixels), mode)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only (cheap): the format is known and the size is checked; no pixels yet."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise TooManyPixels(f"the image is too large to decode ({err})") from None
    except UnidentifiedImageError:
        raise UnsupportedImage("the body is not an image in a format the server can read "
                               "(PNG, JPEG, GIF, BMP, TIFF, WebP, ... are)") from None
    except Exception as err:  # noqa: BLE001 - a parser fed hostile bytes may raise anything
        raise CorruptImage(f"the image header could not be read ({_describe(err)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(f"the image is {width}x{height} = {width * height:,} pixels; "
                            f"the limit is {max_pixels:,}")
    if width == 0 or height == 0:
        raise CorruptImage(f"the image is {width}x{height} pixels: empty")
    return image


def load(image: Image.Image, mode: str) -> Image.Image:
    """Decode an opened image's pixels: upright, `mode` ("L" or "RGB"), transparency on white."""
    try:
        image.draft(None, (WORKING_SIZE, WORKING_SIZE))  # JPEG only: decode at a reduced scale
        image.load()
    except Exception as err:  # noqa: BLE001 - truncated and damaged files fail here, in many ways
        raise CorruptImage(f"the {image.format or 'image'} data is truncated or damaged "
                           f"({_describe(err)})") from None
    try:
        image = _flatten(_upright(image), mode)
        if max(image.size) > WORKING_SIZE:
            image = image.reduce(math.ceil(max(image.size) / WORKING_SIZE))
    except ServiceError:
        raise
    except Exception as err:  # noqa: BLE001 - decoded, but its pixels cannot be converted
        raise CorruptImage(f"the {image.format or 'image'} pixels cannot be converted "
                           f"({_describe(err)})") from None
    return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block is ignored, not fatal."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as err:  # noqa: BLE001
        log.info("ignoring unreadable EXIF orientation: %s", _describe(err))
        return image
    return upright if upright is not None else image


def _flatten(image: Image.Image, mode: str) -> Image.Image:
    """Any mode and bit depth -> 8-bit `mode`; transparent pixels composited onto white."""
    if image.mode in _HIGH_DEPTH_MODES:
        image = _to_8bit(image)
    try:
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        if image.mode != mode:
            image = image.convert("RGB").convert(mode) if image.mode != "RGB" else image.convert(mode)
    except ValueError as err:  # a mode Pillow decodes but cannot convert (e.g. "La")
        raise UnsupportedImage(f"images in Pillow mode {image.mode} are not supported ({err})") from None
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> L, keeping the image's own range."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or 255.0 < top <= 65535.0:
        values = values / 257.0  # 16-bit samples: 65535 -> 255
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0  # float images in [0, 1]
    elif top > 65535.0:
        values = values * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
