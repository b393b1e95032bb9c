"""What `formats.screen` lets through to Pillow: the accepted formats, and each structure limit
exactly at and just past it."""

from __future__ import annotations

import struct

import pytest
from PIL import Image
from testkit import hostile
from testkit.hostile import encode, photo

from service import formats
from service.errors import ImageTooComplex, UnsupportedImage
from service.formats import screen

PHOTO = photo(size=64)


@pytest.mark.parametrize(("fmt", "options"), [
    ("PNG", {}), ("JPEG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
    ("WEBP", {}), ("WEBP", {"lossless": True}),
])
def test_every_accepted_format_passes_as_itself(fmt: str, options: dict) -> None:
    assert screen(encode(PHOTO, fmt, **options)).format == fmt


def test_a_camera_jpeg_with_exif_and_icc_passes_and_decodes_in_one_pass() -> None:
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Camera"
    screened = screen(encode(PHOTO, "JPEG", exif=exif, icc_profile=b"\0" * 200_000, quality=90))
    assert screened.format == "JPEG" and not screened.full_size


def test_progressive_and_multi_scan_jpegs_are_decoded_at_full_size() -> None:
    assert screen(encode(PHOTO, "JPEG", progressive=True)).full_size


@pytest.mark.parametrize(("name", "data"), [
    ("JPEG2000", encode(PHOTO, "JPEG2000")), ("QOI", encode(PHOTO, "QOI")), ("EPS", hostile.eps()),
    ("PPM", hostile.ppm_plain(8)), ("ICO", encode(PHOTO, "ICO")), ("PCX", encode(PHOTO, "PCX")),
])
def test_other_formats_are_refused_by_name_with_the_accepted_ones(name: str, data: bytes) -> None:
    with pytest.raises(UnsupportedImage, match=f"{name} images are not accepted; the service reads PNG, JPEG, WebP"):
        screen(data)


def test_bytes_of_no_known_format_are_refused() -> None:
    with pytest.raises(UnsupportedImage, match="not an image"):
        screen(b"%PDF-1.4 not pixels")


def png_with_chunks(count: int) -> bytes:
    """IHDR, `count` - 2 empty private chunks, IDAT: `count` chunks before IEND."""
    return hostile.png_of_zeros(8, 8, extra_chunks=count - 2)


def jpeg_with_segments(count: int) -> bytes:
    body = encode(PHOTO, "JPEG")
    own = sum(1 for s in hostile.jpeg_segments(body)[1:-1])
    return body[:2] + b"\xff\xfe\x00\x02" * (count - own) + body[2:]


def gif_with_blocks(count: int) -> bytes:
    body = encode(PHOTO.quantize(4), "GIF")
    own = 13 + (3 << ((body[10] & 7) + 1))
    return body[:own] + b"!\xfe" + b"\x01x" * (count - 1) + b"\x00" + body[own:]


def rle_bmp(width: int, height: int, padding: int = 0) -> bytes:
    return hostile.bmp_rle8(width, height, b"\x00\x00" * height + b"\x00\x01" + b"\0" * padding)


@pytest.mark.parametrize(("make", "limit"), [
    (png_with_chunks, formats.MAX_PNG_CHUNKS),
    (jpeg_with_segments, formats.MAX_JPEG_SEGMENTS),
    (lambda n: hostile.jpeg_many_scans(64, n - 10), formats.MAX_JPEG_SCANS),  # its own 10 scans, and repeats
    (gif_with_blocks, formats.MAX_GIF_BLOCKS),
    (lambda n: hostile.tiff(8, 8, [(40000 + i, 3, 1, b"\1\0\0\0") for i in range(n - 9)], b"\x80" * 64),
     formats.MAX_TIFF_TAGS),
    (lambda n: rle_bmp(n, 1), formats.MAX_RLE_BMP_PIXELS),
    (lambda n: rle_bmp(8, 8, n - len(rle_bmp(8, 8))), formats.MAX_RLE_BMP_BYTES),
])
def test_each_structure_limit_passes_at_the_limit_and_refuses_past_it(make, limit: int) -> None:
    screen(make(limit))
    with pytest.raises(ImageTooComplex, match=f"the limit(s for RLE)? (is|are) .*{limit:,}"):
        screen(make(limit + 1))


def test_uncompressed_tiff_strips_are_limited_and_compressed_ones_are_not() -> None:
    def striped(strips: int, compression: int) -> bytes:
        data = bytearray(hostile.tiff(8, 8, [], b"\x80" * 64))
        at = data.index(struct.pack("<HHI", 273, 4, 1))
        data[at + 4:at + 8] = struct.pack("<I", strips)
        at = data.index(struct.pack("<HHI", 259, 3, 1))
        data[at + 8:at + 10] = struct.pack("<H", compression)
        return bytes(data)
    screen(striped(formats.MAX_TIFF_RAW_STRIPS, 1))
    screen(striped(10 * formats.MAX_TIFF_RAW_STRIPS, 8))  # deflate: libtiff reads the strips, in C
    with pytest.raises(ImageTooComplex, match="strips"):
        screen(striped(formats.MAX_TIFF_RAW_STRIPS + 1, 1))


def test_an_animations_later_frames_are_not_counted() -> None:
    """An APNG's frames after the first, and a GIF's, are never read: thousands of them pass."""
    screen(hostile.frames("PNG", 6000))
    screen(hostile.frames("GIF", 6000))


@pytest.mark.parametrize("name", ["png-790k-chunks", "jpeg-2.3m-segments", "jpeg-41k-scans", "gif-5m-subblocks",
                                  "tiff-60k-tags", "bmp-rle8-end-of-lines", "bmp-rle8-short-runs"])
def test_the_corpus_structure_attacks_are_refused(name: str) -> None:
    with pytest.raises(ImageTooComplex):
        screen(hostile.CORPUS[name].build())
