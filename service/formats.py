"""Which image formats the service reads, and how much structure a file holds, read from its
own headers before Pillow parses it.

Pillow walks some structures one element at a time in Python (PNG chunks, JPEG marker segments
before the first scan, GIF extension sub-blocks, TIFF tags, uncompressed TIFF strips, every
pixel and run of an RLE BMP), and libjpeg goes over every coefficient once per progressive scan. None
of that is bounded by the pixel count: a 9.5 MB PNG of 8x8 pixels and 790,000 empty chunks
cost 2.4 s. `screen` counts what a file holds (a walk over its headers; the scans' data is
skipped by a regular expression, in C) and refuses one over any limit with `ImageTooComplex`
(413). Formats outside `ACCEPTED` are `UnsupportedImage` (415), by name when Pillow knows them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from PIL import Image

from service.errors import ImageTooComplex, UnsupportedImage

# Pillow's names. JPEG includes its multi-picture variant (MPO), which Pillow opens as JPEG.
ACCEPTED = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
ACCEPTED_TEXT = "PNG, JPEG, WebP, GIF, BMP and TIFF"

# Each limit is far above what real files hold and costs Pillow at most a few tens of
# milliseconds at the limit (measured: docs/results.md, "Hostile uploads").
MAX_PNG_CHUNKS = 10_000  # libpng writes 8 KB IDAT chunks: a 10 MB PNG holds about 1,300
MAX_JPEG_SEGMENTS = 1_000  # a camera JPEG holds 10-30; a 9.7 MB ICC profile takes 149 APP2
MAX_JPEG_SCANS = 100  # libjpeg's progressive script writes 10 scans, mozjpeg's about as many
MAX_GIF_BLOCKS = 10_000  # extension sub-blocks before the first frame (255 bytes each at most)
MAX_TIFF_TAGS = 1_000  # entries of the first IFD (a camera's TIFF: 20-100)
MAX_TIFF_RAW_STRIPS = 4_096  # strips or tiles of an uncompressed TIFF, one Python step each
# RLE BMP: Pillow's decoder is pure Python, a step per pixel padded and per run read, and it
# reads runs past the last pixel to the end of the file: both are capped (about 0.1 s).
MAX_RLE_BMP_PIXELS = 250_000
MAX_RLE_BMP_BYTES = 512 * 1024

_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_ONE_PASS = {0xC0, 0xC1, 0xC9}  # sequential DCT: drafted, and decoded scan line by scan line
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length
# The end of a scan's entropy-coded data: a 0xFF that is not stuffing (00), fill (FF) or a restart.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class Screened:
    """What the decoder will do with a file that passed `screen`."""

    format: str  # Pillow's name, one of ACCEPTED
    # JPEG: decoded at full size, or with a coefficient buffer for every block (progressive,
    # multi-scan, lossless): the draft's reduced scale saves no memory.
    full_size: bool = False
    # Full-size copies of the pixels the decoder holds at once: WebP's decoder keeps its canvas
    # and hands over another, then Pillow makes the image (measured: 15 bytes per RGB pixel).
    copies: int = 1


def screen(data: bytes) -> Screened:
    """The file's format, once its structure is within every limit (else a typed error)."""
    prefix = data[:16]
    fmt = _sniff(prefix, ACCEPTED)
    if fmt is None:
        known = _sniff(prefix, tuple(f for f in Image.ID if f not in ACCEPTED))
        if known:
            raise UnsupportedImage(f"{known} images are not accepted; the service reads {ACCEPTED_TEXT}")
        raise UnsupportedImage(f"the body is not an image in a format the service reads ({ACCEPTED_TEXT})")
    walk = _WALKS.get(fmt)
    return walk(data) if walk else Screened(fmt)


def _sniff(prefix: bytes, formats: tuple[str, ...]) -> str | None:
    """The first of `formats` whose Pillow plugin recognises the file's first bytes."""
    Image.init()
    for fmt in formats:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            recognised = accept is not None and accept(prefix) is True
        except Exception:  # noqa: BLE001 - some plugins' checks fail on a prefix shorter than they read (DIB: < 4 bytes)
            recognised = False
        if recognised:
            return fmt
    return None


def _too_complex(what: str, count: int | str, limit: int) -> ImageTooComplex:
    return ImageTooComplex(f"the image holds {count} {what}; the limit is {limit:,} "
                           "(refused before decoding: each costs the decoder time)")


def _png(data: bytes) -> Screened:
    """Counts the chunks Pillow reads: all of them, or up to the second frame of an APNG."""
    pos, chunks, animated, seen_idat = 8, 0, False, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IEND" or (animated and seen_idat and kind == b"fcTL"):
            break
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_complex("PNG chunks", f"more than {MAX_PNG_CHUNKS:,}", MAX_PNG_CHUNKS)
        animated |= kind == b"acTL"
        seen_idat |= kind == b"IDAT"
        pos += 12 + length
    return Screened("PNG")


def _jpeg(data: bytes) -> Screened:
    """Counts marker segments and scans up to the end of the image; notes how it decodes."""
    pos, segments, scans, frame = 2, 0, 0, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break  # not a marker where one must be: Pillow and libjpeg report the damage
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_complex("JPEG marker segments", f"more than {MAX_JPEG_SEGMENTS:,}", MAX_JPEG_SEGMENTS)
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _JPEG_FRAMES and frame is None:
            frame = marker
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _too_complex("JPEG scans", f"more than {MAX_JPEG_SCANS}", MAX_JPEG_SCANS)
            found = _NEXT_MARKER.search(data, end)
            end = found.start() if found else len(data)
        pos = end
    return Screened("JPEG", full_size=frame not in _JPEG_ONE_PASS or scans > 1)


def _gif(data: bytes) -> Screened:
    """Counts what Pillow steps over in Python ahead of the first frame: each extension
    sub-block, and each stray byte."""
    if len(data) < 13:
        return Screened("GIF")
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    steps = 0
    while pos < len(data) and data[pos] not in b",;":
        steps += 1
        if data[pos] == 0x21:  # "!": an extension (its label, then sub-blocks up to an empty one)
            pos += 2
            while pos < len(data) and data[pos] and steps <= MAX_GIF_BLOCKS:
                steps += 1
                pos += 1 + data[pos]
        pos += 1
        if steps > MAX_GIF_BLOCKS:
            raise _too_complex("GIF blocks before the first frame", f"more than {MAX_GIF_BLOCKS:,}", MAX_GIF_BLOCKS)
    return Screened("GIF")


def _tiff(data: bytes) -> Screened:
    """Counts the first IFD's entries, and the strips of an uncompressed image."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"\x2b\x00", b"\x00\x2b")
    try:
        offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
        entries = struct.unpack_from(order + ("Q" if big else "H"), data, offset)[0]
    except struct.error:
        return Screened("TIFF")  # too short to hold an IFD: Pillow reports it
    if entries > MAX_TIFF_TAGS:
        raise _too_complex("TIFF tags in its first directory", f"{entries:,}", MAX_TIFF_TAGS)
    size, count_format = (20, "Q") if big else (12, "I")
    start = offset + (8 if big else 2)
    compression, pieces = 1, 0
    for entry in range(start, min(start + entries * size, len(data) - size + 1), size):
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag == 259 and kind == 3:  # Compression, a SHORT at the start of the value field
            compression = struct.unpack_from(order + "H", data, entry + size - (8 if big else 4))[0]
        elif tag in (273, 324):  # StripOffsets, TileOffsets: how many
            pieces = max(pieces, struct.unpack_from(order + count_format, data, entry + 4)[0])
    if compression == 1 and pieces > MAX_TIFF_RAW_STRIPS:
        raise _too_complex("strips or tiles of uncompressed TIFF data", f"{pieces:,}", MAX_TIFF_RAW_STRIPS)
    return Screened("TIFF")


def _bmp(data: bytes) -> Screened:
    """Bounds the size of an RLE-compressed bitmap, which Pillow decodes in Python."""
    if len(data) < 34 or int.from_bytes(data[14:18], "little") < 40:  # no compression field
        return Screened("BMP")
    width, height, _, _, compression = struct.unpack_from("<iiHHI", data, 18)
    if compression in (1, 2):  # RLE8, RLE4
        pixels = abs(width) * abs(height)
        if pixels > MAX_RLE_BMP_PIXELS or len(data) > MAX_RLE_BMP_BYTES:
            raise ImageTooComplex(f"an RLE-compressed BMP of {pixels:,} pixels in {len(data):,} bytes; the limits "
                                  f"for RLE are {MAX_RLE_BMP_PIXELS:,} pixels and {MAX_RLE_BMP_BYTES:,} bytes "
                                  "(its decoder is slow)")
    return Screened("BMP")


def _webp(_: bytes) -> Screened:
    return Screened("WEBP", copies=4)


_WALKS = {"PNG": _png, "JPEG": _jpeg, "GIF": _gif, "TIFF": _tiff, "BMP": _bmp, "WEBP": _webp}
