"""Untrusted bytes -> a decoded, upright, opaque Pillow image (8-bit L or RGB), within limits.

Pillow parses the formats of `formats.ACCEPTED` and no others; this module makes each way that
can go wrong a typed error (`UnsupportedImage` 415, `CorruptImage` 422, `TooManyPixels` and
`ImageTooComplex` 413) and bounds what one file may cost, before any pixel is decoded:

- structure: `formats.screen` counts chunks, segments, scans and tags (the time Pillow would
  spend reading them in Python);
- memory: the decoder's own full-size copy is the file's width x height, refused above
  `ImageLimits.pixels`. JPEGs decode at a reduced scale (draft: down to 1/8 per side), so a
  one-pass JPEG may declare up to `ImageLimits.jpeg_pixels`; progressive ones hold coefficients
  for every block and fall under `pixels` like the rest. After the decoder, every step
  (8-bit conversion, transparency, shrinking to WORKING_SIZE) works one band at a time, so no
  second full-size copy is made.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import CorruptImage, ServiceError, TooManyPixels, UnsupportedImage
from service.formats import screen

# Nothing downstream needs more than this: digits are centred into 20 px, photos resized to
# 32 px. Bigger images are shrunk to it (JPEG straight at a reduced scale, with Image.draft;
# others by box averaging, band by band), so a 12-megapixel photo costs little more.
WORKING_SIZE = 1024
BAND_PIXELS = 1 << 20  # a band of a large image converted and shrunk at a time: a few MB

_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the turn that makes it upright
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')


@dataclass(frozen=True)
class ImageLimits:
    pixels: int  # width x height decoded at full size: any format, and a JPEG after its draft
    jpeg_pixels: int  # width x height a one-pass JPEG may declare (decoded at up to 1/8 per side)

    @classmethod
    def of(cls, limits: ImageLimits | int) -> ImageLimits:
        """An int is one limit for every format."""
        return limits if isinstance(limits, ImageLimits) else cls(pixels=limits, jpeg_pixels=limits)


def decode(data: bytes, limits: ImageLimits | int, mode: str) -> Image.Image:
    """Decode `data` into an upright image of `mode` ("L" or "RGB"), transparency on white."""
    return load(open_image(data, limits), mode)


def open_image(data: bytes, limits: ImageLimits | int) -> Image.Image:
    """Read the header only: the format is accepted, the structure and size are within limits,
    and a JPEG is set to decode at a reduced scale; no pixels yet. `decoded_pixels` then says
    what decoding it will hold."""
    limits = ImageLimits.of(limits)
    screened = screen(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[screened.format])
    except Image.DecompressionBombError:  # Pillow's own guard, at twice its MAX_IMAGE_PIXELS
        raise TooManyPixels(f"the image declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; the limit "
                            f"is {limits.pixels:,}") from None
    except UnidentifiedImageError:
        raise CorruptImage(f"the {screened.format} header could not be read") from None
    except Exception as err:  # noqa: BLE001 - a parser fed hostile bytes may raise anything
        raise CorruptImage(f"the image header could not be read ({_describe(err)})") from None
    width, height = image.size
    one_pass_jpeg = screened.format == "JPEG" and not screened.full_size
    declared_limit = limits.jpeg_pixels if one_pass_jpeg else limits.pixels
    if width * height > declared_limit:
        which = " for a progressive or multi-scan JPEG" if screened.format == "JPEG" and not one_pass_jpeg else ""
        raise TooManyPixels(f"the image is {width}x{height} = {width * height:,} pixels; "
                            f"the limit is {declared_limit:,}{which}")
    if width == 0 or height == 0:
        raise CorruptImage(f"the image is {width}x{height} pixels: empty")
    try:  # JPEG only: decode straight at a reduced scale, chosen by the longer side
        image.draft(None, (WORKING_SIZE, 1) if width >= height else (1, WORKING_SIZE))
    except Exception as err:  # noqa: BLE001
        raise CorruptImage(f"the {screened.format} header could not be read ({_describe(err)})") from None
    limit = limits.pixels // screened.copies
    if decoded_pixels(image) > limit:  # a JPEG too thin to be drafted much; WebP's copies
        which = f" for {screened.format}, whose decoder holds {screened.copies} copies" if screened.copies > 1 else ""
        raise TooManyPixels(f"the image decodes to {image.width}x{image.height} = {decoded_pixels(image):,} "
                            f"pixels; the limit is {limit:,}{which}")
    return image


def decoded_pixels(image: Image.Image) -> int:
    """The pixels the decoder will hold for an image from `open_image` (a JPEG: after its draft)."""
    return image.width * image.height


def load(image: Image.Image, mode: str) -> Image.Image:
    """Decode an opened image's pixels: upright, `mode` ("L" or "RGB"), transparency on white."""
    try:
        image.load()
    except Exception as err:  # noqa: BLE001 - truncated and damaged files fail here, in many ways
        raise CorruptImage(f"the {image.format or 'image'} data is truncated or damaged "
                           f"({_describe(err)})") from None
    try:
        turn = _TURNS.get(_orientation(image))
        image = _shrunk(image, mode)
        return image.transpose(turn) if turn is not None else image
    except ServiceError:
        raise
    except Exception as err:  # noqa: BLE001 - decoded, but its pixels cannot be converted
        raise CorruptImage(f"the {image.format or 'image'} pixels cannot be converted "
                           f"({_describe(err)})") from None


def _shrunk(image: Image.Image, mode: str) -> Image.Image:
    """`_flatten`, then box-average to WORKING_SIZE, a band of whole boxes at a time."""
    factor = math.ceil(max(image.size) / WORKING_SIZE)
    if factor == 1:
        return _flatten(image, mode)
    width, height = image.size
    rows = factor * max(1, BAND_PIXELS // (width * factor))
    bands = [(0, top, width, min(top + rows, height)) for top in range(0, height, rows)]
    # 32-bit and float images are scaled by their own range: found over every band first.
    top = max(_finite_max(image.crop(box)) for box in bands) if image.mode in ("I", "F") else None
    shrunk = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for box in bands:
        band = _flatten(image.crop(box), mode, top)
        shrunk.paste(band.reduce(factor), (0, box[1] // factor))
    return shrunk


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or unreadable), found without Pillow's getexif,
    which reads every entry of the block in Python (a PNG's eXIf chunk may hold 65,535)."""
    if image.format == "TIFF":
        value = image.tag_v2.get(274, 1)  # its first IFD: parsed already, within MAX_TIFF_TAGS
        return value if isinstance(value, int) else 1
    exif = image.info.get("exif")
    if exif is None and isinstance(image.info.get("Raw profile type exif"), str):  # ImageMagick's PNG text
        try:
            exif = bytes.fromhex("".join(image.info["Raw profile type exif"].split("\n")[3:]))
        except ValueError:
            exif = None
    found = _exif_orientation(exif) if isinstance(exif, bytes) else None
    if found is None:  # as Pillow does: the orientation an XMP packet states
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
        match = _XMP_ORIENTATION.search(xmp.encode() if isinstance(xmp, str) else xmp) if xmp else None
        found = int(match[2]) if match else None
    return found or 1


def _exif_orientation(exif: bytes) -> int | None:
    """Tag 0x0112 of an EXIF block's first IFD, or None."""
    if exif.startswith(b"Exif\0\0"):
        exif = exif[6:]
    order = {b"II": "<", b"MM": ">"}.get(exif[:2])
    if order is None:
        return None
    try:
        offset = struct.unpack_from(order + "I", exif, 4)[0]
        count = struct.unpack_from(order + "H", exif, offset)[0]
        for entry in range(offset + 2, min(offset + 2 + 12 * count, len(exif) - 11), 12):
            tag, kind = struct.unpack_from(order + "HH", exif, entry)
            if tag == 0x0112 and kind == 3:  # a SHORT
                return struct.unpack_from(order + "H", exif, entry + 8)[0]
    except struct.error:
        return None
    return None


def _flatten(image: Image.Image, mode: str, top: float | None = None) -> Image.Image:
    """Any mode and bit depth -> 8-bit `mode`; transparent pixels composited onto white.
    `top`: the largest value of a high-depth image (of the whole, when this is one band)."""
    if image.mode in _HIGH_DEPTH_MODES:
        image = _to_8bit(image, top)
    try:
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        if image.mode != mode:
            image = image.convert("RGB").convert(mode) if image.mode != "RGB" else image.convert(mode)
    except ValueError as err:  # a mode Pillow decodes but cannot convert (e.g. "La")
        raise UnsupportedImage(f"images in Pillow mode {image.mode} are not supported ({err})") from None
    return image


def _finite_max(image: Image.Image) -> float:
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return float(values.max()) if values.size else 0.0


def _to_8bit(image: Image.Image, top: float | None = None) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> L, keeping the image's own range (`top`:
    its largest finite value, found here unless given)."""
    if image.mode.startswith("I;16"):  # round(v / 257) in integers: exact, and a few times faster
        return Image.fromarray(((np.asarray(image).astype(np.uint32) + 128) // 257).astype(np.uint8))
    top = _finite_max(image) if top is None else top
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if 255.0 < top <= 65535.0:
        values = values / 257.0  # 16-bit samples: 65535 -> 255
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0  # float images in [0, 1]
    elif top > 65535.0:
        values = values * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
