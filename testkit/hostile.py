"""Hostile image uploads (issue 17), each made deterministically in memory: nothing large is committed.

`CORPUS` names every file: the attacks the issue reproduced, the ones that already held, and
the ones found while defending (the Python-level loops of Pillow's BMP RLE and GIF readers, a
TIFF IFD of 65,535 entries, progressive JPEG's full-size coefficient buffer, a JPEG too thin
for draft). `cheap` ones cost little to build and to refuse; tests/service/test_hostile.py sends
those to a real server, bench/hostile.py sends them all. Most are put together byte by byte
(Pillow would never write 790,000 empty chunks); where Pillow can write a file, it does.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, TiffTags

LIMIT_SIDE = 6324  # 6324 x 6324 = 39.99 Mpx, just under the default CNNZOO_MAX_IMAGE_PIXELS=40M
OK, REFUSED = (200,), (413, 415, 422)
TOO_COMPLEX = (413,)  # what the structure limits of service/formats.py answer


@dataclass(frozen=True)
class Hostile:
    name: str
    what: str
    build: Callable[[], bytes]
    statuses: tuple[int, ...]  # what a defended server may answer to /predict with this file
    cheap: bool = False  # cheap to build and to send in the test suite
    copies: int = 1  # more than 1: sent as one /batch request of that many copies
    # An image that must get exactly the same answer (a multi-frame file: its first frame alone).
    same_answer_as: Callable[[], bytes] | None = None


# --- PNG ------------------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=8)
def png_of_zeros(width: int, height: int, color_type: int = 6, bit_depth: int = 8,
                 extra_chunks: int = 0) -> bytes:
    """An all-zero PNG, compressed row by row (never held whole): 6324x6324 RGBA is 155 KB.
    `extra_chunks` empty private chunks come before the pixels (each costs Pillow a Python step)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = b"\0" * (1 + (width * channels * bit_depth + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))]
    if color_type == 3:
        chunks.append(png_chunk(b"PLTE", b"\0\0\0\xff\xff\xff"))
    chunks.append(png_chunk(b"prVt") * extra_chunks)
    return PNG_SIGNATURE + b"".join(chunks) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND")


def png_declaring(width: int, height: int) -> bytes:
    """A header that claims width x height over a few bytes of pixels."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return PNG_SIGNATURE + ihdr + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND")


# --- Real content, encoded by Pillow ----------------------------------------------------------
def photo(seed: int = 0, size: int = 32) -> Image.Image:
    """A smooth colour picture (deterministic), like a small photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(x * rng.uniform(2, 8) + y * rng.uniform(2, 8) + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray(((np.dstack(channels) + 1) * 127.5).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def frames(fmt: str, count: int) -> bytes:
    """A `count`-frame animation (or multi-page TIFF) whose first frame is `photo()`."""
    first = photo()
    rest = [Image.new("RGB", first.size, (i % 251, (i * 7) % 253, 0)) for i in range(1, count)]
    if fmt == "GIF":
        first = first.quantize(64)
    return encode(first, fmt, save_all=True, append_images=rest)


def first_frame(fmt: str) -> bytes:
    first = photo().quantize(64) if fmt == "GIF" else photo()
    return encode(first, fmt)


def noise(width: int, height: int, channels: int = 3, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8))


# --- JPEG -----------------------------------------------------------------------------------
def jpeg_segments(data: bytes) -> list[bytes]:
    """A JPEG cut into its marker segments, each scan with its entropy-coded data, EOI last."""
    segments, pos = [data[:2]], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            segments.append(data[pos:pos + 2])
            break
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # the scan's data runs to the next marker that is not a stuffed 0xFF or a restart
            while not (data[end] == 0xFF and data[end + 1] not in (0, 0xFF, *range(0xD0, 0xD8))):
                end += 1
        segments.append(data[pos:end])
        pos = end
    return segments


@lru_cache(maxsize=2)
def jpeg_many_scans(side: int = 2000, repeats: int = 41_000) -> bytes:
    """A progressive JPEG whose small luma scan (AC 1-5 of Y, 14 bytes) comes `repeats` times:
    libjpeg goes over every coefficient of the image once per scan."""
    segments = jpeg_segments(encode(Image.new("RGB", (side, side), (128, 128, 128)), "JPEG",
                                    progressive=True, quality=90))
    scans = [i for i, s in enumerate(segments) if s[1] == 0xDA]
    luma_ac = next(i for i in scans if segments[i][4] == 1 and segments[i][5] == 1 and segments[i][7] > 0)
    return b"".join(segments[:luma_ac + 1] + [segments[luma_ac]] * repeats + segments[luma_ac + 1:])


def jpeg_many_segments(count: int = 2_300_000) -> bytes:
    """A small JPEG behind `count` empty COM and APP15 segments (4 bytes each), which Pillow's
    header parser reads one by one in Python."""
    body = encode(photo(), "JPEG")
    empty = b"\xff\xfe\x00\x02\xff\xef\x00\x02" * (count // 2)
    return body[:2] + empty + body[2:]


def jpeg_declaring(width: int, height: int, progressive: bool) -> bytes:
    """A 64x64 JPEG (4:4:4) whose frame header claims width x height: libjpeg fills in the
    missing data, and a progressive one first allocates coefficients for every block."""
    segments = jpeg_segments(encode(photo(size=64), "JPEG", progressive=progressive, subsampling=0))
    sof = next(i for i, s in enumerate(segments) if s[1] in (0xC0, 0xC2))
    segments[sof] = segments[sof][:5] + struct.pack(">HH", height, width) + segments[sof][9:]
    return b"".join(segments)


def jpeg_with_icc(size: int) -> bytes:
    return encode(photo(), "JPEG", icc_profile=bytes(np.random.default_rng(1).integers(0, 256, size, np.uint8)))


# --- GIF, BMP, TIFF -------------------------------------------------------------------------
def gif_many_subblocks(count: int = 5_000_000) -> bytes:
    """A small GIF whose comment extension is `count` one-byte sub-blocks, read in Python."""
    body = encode(photo().quantize(4), "GIF")
    palette_end = 13 + (3 << ((body[10] & 7) + 1) if body[10] & 0x80 else 0)
    comment = b"!\xfe" + b"\x01x" * count + b"\x00"
    return body[:palette_end] + comment + body[palette_end:]


def bmp_rle8(width: int, height: int, rows: bytes) -> bytes:
    """An 8-bit RLE BMP of `rows` (the RLE stream), a grey palette."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def bmp_rle8_end_of_lines(side: int = LIMIT_SIDE) -> bytes:
    """Each row one pixel, then an end-of-line code: Pillow's RLE decoder pads the rest of the
    row one byte at a time, in Python (4 bytes a row)."""
    return bmp_rle8(side, side, b"\x01\x80\x00\x00" * side + b"\x00\x01")


def bmp_rle8_short_runs(size: int = 9_900_000, width: int = 3000) -> bytes:
    """Runs of one pixel each, two bytes per run: one Python step per pixel."""
    rows = size // (2 * width + 2)
    return bmp_rle8(width, rows, (b"\x01\x80" * width + b"\x00\x00") * rows + b"\x00\x01")


def tiff(width: int, height: int, entries: list[tuple[int, int, int, bytes]], pixels: bytes) -> bytes:
    """A little-endian TIFF: 8-bit grey pixels right after the header, then IFD0 of `entries`
    (tag, type, count, 4-byte value or offset) besides the tags the image needs."""
    pixel_offset, ifd_offset = 8, 8 + len(pixels)
    own = [(256, 4, 1, struct.pack("<I", width)), (257, 4, 1, struct.pack("<I", height)),
           (258, 3, 1, struct.pack("<HH", 8, 0)), (259, 3, 1, struct.pack("<HH", 1, 0)),
           (262, 3, 1, struct.pack("<HH", 1, 0)), (273, 4, 1, struct.pack("<I", pixel_offset)),
           (277, 3, 1, struct.pack("<HH", 1, 0)), (278, 4, 1, struct.pack("<I", height)),
           (279, 4, 1, struct.pack("<I", len(pixels)))]
    ifd = sorted(own + entries, key=lambda entry: entry[0])
    table = b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in ifd)
    return b"II*\0" + struct.pack("<I", ifd_offset) + pixels + struct.pack("<H", len(ifd)) + table + b"\0\0\0\0"


def tiff_bad_tags(count: int = 4000) -> bytes:
    """`count` private tags of 400 bytes each: past the first hundred their data would outgrow
    the file, and Pillow warns once per tag, each time in other words."""
    return tiff(8, 8, [(40000 + i, 4, 100, struct.pack("<I", 8)) for i in range(count)], b"\x80" * 64)


def tiff_many_tags(count: int = 60_000) -> bytes:
    """An IFD of nearly the most entries TIFF allows (65,535), each a valid tag no reader knows."""
    unknown = (tag for tag in range(1000, 65536) if tag not in TiffTags.TAGS_V2 and tag not in TiffTags.TAGS)
    return tiff(8, 8, [(tag, 3, 1, b"\x01\0\0\0") for tag, _ in zip(unknown, range(count))], b"\x80" * 64)


def tiff_strip_abuse() -> bytes:
    """Strip offsets and byte counts that point far past the end of a small file."""
    data = bytearray(tiff(64, 64, [], b"\x80" * 64))
    table = data.index(struct.pack("<HHI", 273, 4, 1))
    data[table + 8:table + 12] = struct.pack("<I", 0xFFFF0000)
    counts = data.index(struct.pack("<HHI", 279, 4, 1))
    data[counts + 8:counts + 12] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(data)


def eps() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nnewpath 0 0 moveto 32 32 lineto stroke\n%%EOF\n"


def ppm_plain(side: int = 1000) -> bytes:
    """A plain (ASCII) PPM: Pillow reads it number by number in Python."""
    return f"P3\n{side} {side}\n255\n".encode() + b"1 2 3\n" * (side * side)


# --- The corpus -----------------------------------------------------------------------------
Z = LIMIT_SIDE
CORPUS: dict[str, Hostile] = {h.name: h for h in [
    # Reproduced in the issue
    Hostile("batch-64-zero-png", "64 copies of a 6324x6324 all-zero RGBA PNG (155 KB, 39.99 Mpx each) in one /batch",
            lambda: png_of_zeros(Z, Z), OK + REFUSED, copies=64),
    Hostile("jpeg-41k-scans", "2000x2000 progressive JPEG repeating one small scan 41,000 times (600 KB)",
            jpeg_many_scans, TOO_COMPLEX, cheap=True),
    Hostile("png-790k-chunks", "8x8 PNG behind 790,000 empty private chunks (9.5 MB)",
            lambda: png_of_zeros(8, 8, extra_chunks=790_000), TOO_COMPLEX, cheap=True),
    Hostile("jpeg-2.3m-segments", "small JPEG behind 2.3 M empty COM/APP15 segments (9.2 MB)",
            jpeg_many_segments, TOO_COMPLEX, cheap=True),
    Hostile("jpeg2000-noise", "1750x1750 noise as lossless JPEG 2000 (10 MB)",
            lambda: encode(noise(1750, 1750), "JPEG2000", irreversible=False), (415,)),
    Hostile("qoi-noise", "700x700 RGBA noise as QOI (2 MB; Pillow's QOI decoder is pure Python)",
            lambda: encode(noise(700, 700, 4), "QOI"), (415,), cheap=True),
    # Cheaper versions of the same
    Hostile("batch-8-zero-png-2000", "8 copies of a 2000x2000 all-zero RGBA PNG in one /batch",
            lambda: png_of_zeros(2000, 2000), OK + REFUSED, cheap=True, copies=8),
    Hostile("jpeg2000-small", "64x64 JPEG 2000", lambda: encode(photo(size=64), "JPEG2000"), (415,), cheap=True),
    Hostile("qoi-small", "64x64 QOI", lambda: encode(photo(size=64), "QOI"), (415,), cheap=True),
    Hostile("eps", "an EPS file (Pillow would run Ghostscript on it)", eps, (415,), cheap=True),
    Hostile("ppm-plain", "1000x1000 plain-text PPM (6 MB; read number by number in Python)", ppm_plain, (415,),
            cheap=True),
    # Found while defending
    Hostile("png-zero-rgba-limit", "one 6324x6324 all-zero RGBA PNG", lambda: png_of_zeros(Z, Z), OK + REFUSED),
    Hostile("png-zero-grey16-limit", "6324x6324 all-zero 16-bit greyscale PNG (float conversion at full size)",
            lambda: png_of_zeros(Z, Z, color_type=0, bit_depth=16), OK + REFUSED),
    Hostile("png-zero-palette-limit", "6324x6324 all-zero palette PNG", lambda: png_of_zeros(Z, Z, color_type=3),
            OK + REFUSED),
    Hostile("gif-zero-limit", "6324x6324 all-zero GIF", lambda: encode(Image.new("L", (Z, Z)), "GIF"), OK + REFUSED),
    Hostile("webp-zero-limit", "6324x6324 all-zero lossless WebP (34 bytes)",
            lambda: encode(Image.new("RGB", (Z, Z)), "WEBP", lossless=True, method=0), OK + REFUSED),
    Hostile("tiff-zero-limit", "6324x6324 all-zero RGBA TIFF, deflate",
            lambda: encode(Image.new("RGBA", (Z, Z)), "TIFF", compression="tiff_adobe_deflate"), OK + REFUSED),
    Hostile("bmp-1bit-limit", "6324x6324 1-bit BMP (5 MB)", lambda: encode(Image.new("1", (Z, Z)), "BMP"),
            OK + REFUSED),
    Hostile("bmp-rle8-end-of-lines", "6324x6324 RLE8 BMP of end-of-line codes (25 KB): Python pads every pixel",
            bmp_rle8_end_of_lines, TOO_COMPLEX, cheap=True),
    Hostile("bmp-rle8-short-runs", "3000x1649 RLE8 BMP of one-pixel runs (9.9 MB)", bmp_rle8_short_runs, TOO_COMPLEX,
            cheap=True),
    Hostile("gif-5m-subblocks", "small GIF whose comment is 5 M one-byte sub-blocks (10 MB)", gif_many_subblocks,
            TOO_COMPLEX, cheap=True),
    Hostile("tiff-60k-tags", "8x8 TIFF with an IFD of 60,000 valid unknown tags (720 KB)", tiff_many_tags, TOO_COMPLEX,
            cheap=True),
    Hostile("jpeg-progressive-64mpx", "64x64 progressive JPEG declaring 8000x8000 (coefficients for every block)",
            lambda: jpeg_declaring(8000, 8000, progressive=True), OK + REFUSED, cheap=True),
    Hostile("jpeg-progressive-limit", "64x64 progressive JPEG (4:4:4) declaring 6324x6324",
            lambda: jpeg_declaring(Z, Z, progressive=True), OK + REFUSED),
    Hostile("webp-zero-10mpx", "3162x3162 all-zero lossless WebP",
            lambda: encode(Image.new("RGB", (3162, 3162)), "WEBP", lossless=True, method=0), OK + REFUSED),
    Hostile("jpeg-baseline-64mpx", "64x64 baseline JPEG declaring 8000x8000",
            lambda: jpeg_declaring(8000, 8000, False), OK + REFUSED, cheap=True),
    Hostile("jpeg-baseline-4gpx", "64x64 baseline JPEG declaring 65535x65535",
            lambda: jpeg_declaring(65535, 65535, False), (413,), cheap=True),
    Hostile("jpeg-thin-39mpx", "65000x600 grey baseline JPEG (too thin for a square draft)",
            lambda: encode(Image.new("L", (65000, 600), 200), "JPEG"), OK + REFUSED),
    # Already held before issue 17; must go on holding
    Hostile("png-100000-square", "PNG header declaring 100000x100000", lambda: png_declaring(100_000, 100_000), (413,),
            cheap=True),
    Hostile("gif-3000-frames", "3000-frame GIF", lambda: frames("GIF", 3000), OK, cheap=True,
            same_answer_as=lambda: first_frame("GIF")),
    Hostile("apng-3000-frames", "3000-frame APNG", lambda: frames("PNG", 3000), OK, cheap=True,
            same_answer_as=lambda: first_frame("PNG")),
    Hostile("webp-3000-frames", "3000-frame animated WebP", lambda: frames("WEBP", 3000), OK, cheap=True),
    Hostile("tiff-1000-pages", "1000-page TIFF", lambda: frames("TIFF", 1000), OK, cheap=True,
            same_answer_as=lambda: first_frame("TIFF")),
    Hostile("tiff-4000-bad-tags", "8x8 TIFF with 4,000 tags whose data outgrows the file (a Pillow warning each)",
            tiff_bad_tags, OK + REFUSED, cheap=True),
    Hostile("tiff-strip-abuse", "TIFF whose strip offset and byte count point 4 GB away", tiff_strip_abuse, REFUSED,
            cheap=True),
    Hostile("jpeg-icc-9.7mb", "JPEG with a 9.7 MB ICC profile in 149 APP2 segments", lambda: jpeg_with_icc(9_700_000),
            OK + REFUSED, cheap=True),
    Hostile("png-icc-9.7mb", "PNG with a 9.7 MB ICC profile", lambda: encode(photo(), "PNG", icc_profile=bytes(
        np.random.default_rng(2).integers(0, 256, 9_700_000, np.uint8))), OK + REFUSED, cheap=True),
]}


def mutations(count: int, seed: int = 17) -> list[bytes]:
    """Real images of every served format, truncated, bit-flipped or spliced, deterministically."""
    return mutate([encode(image, fmt) for image in (photo(), photo(1, 300))
                   for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")], count, seed)


def mutate(originals: list[bytes], count: int, seed: int) -> list[bytes]:
    """`count` copies of files drawn from `originals`, each truncated, bit-flipped or spliced."""
    rng = np.random.default_rng(seed)
    mutated = []
    for _ in range(count):
        data = bytearray(originals[rng.integers(len(originals))])
        how = rng.integers(3)
        if how == 0:
            data = data[:rng.integers(1, len(data))]
        elif how == 1:
            for position in rng.integers(0, len(data), size=rng.integers(1, 20)):
                data[position] ^= 1 << int(rng.integers(8))
        else:
            start = rng.integers(len(data))
            data[start:start + 64] = rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
        mutated.append(bytes(data))
    return mutated
