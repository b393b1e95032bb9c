"""Decoding untrusted bytes: orientation, transparency, every mode and depth, and each failure."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from service import images
from service.errors import CorruptImage, TooManyPixels, UnsupportedImage
from service.images import WORKING_SIZE, ImageLimits, decode, decoded_pixels, open_image
from testkit.fixture_images import encode, mnist_test
from testkit.hostile import png_declaring

LIMIT = 40_000_000


def quadrant_means(image: Image.Image) -> list[float]:
    a = np.asarray(image.convert("L"), dtype=np.float32)
    h, w = a.shape
    return [a[:h // 2, :w // 2].mean(), a[:h // 2, w // 2:].mean(), a[h // 2:, :w // 2].mean(), a[h // 2:, w // 2:].mean()]


def test_exif_orientation_is_applied() -> None:
    # Upright: a white top-left quadrant on black, 60x40 (landscape).
    upright = np.zeros((40, 60), np.uint8)
    upright[:20, :30] = 255
    # A camera that held the sensor rotated stores the pixels turned, and EXIF 6 ("rotate 90
    # clockwise to display") to undo it.
    stored = Image.fromarray(np.rot90(upright)).convert("RGB")  # 40 wide, 60 tall
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode(encode(stored, "JPEG", quality=95, exif=exif), LIMIT, "L")
    assert decoded.size == (60, 40)
    means = quadrant_means(decoded)
    assert means[0] > 200 and max(means[1:]) < 50


def test_transparency_is_composited_onto_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black...
    rgba[:5, :, :] = (255, 0, 0, 255)  # ...under an opaque red top half
    decoded = np.asarray(decode(encode(rgba), LIMIT, "RGB"))
    assert (decoded[:5] == (255, 0, 0)).all()
    assert (decoded[5:] == 255).all()


def test_palette_transparency_and_grey_alpha() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.paste(1, (0, 0, 8, 4))
    decoded = np.asarray(decode(encode(palette, transparency=0), LIMIT, "RGB"))
    assert (decoded[:4] == (10, 20, 30)).all() and (decoded[4:] == 255).all()
    grey_alpha = Image.fromarray(np.dstack([np.zeros((6, 6), np.uint8), np.full((6, 6), 0, np.uint8)]), "LA")
    assert (np.asarray(decode(encode(grey_alpha), LIMIT, "L")) == 255).all()


GRADIENT = np.tile(np.linspace(0, 1, 64), (16, 1))


@pytest.mark.parametrize(("mode", "fmt", "pixels"), [
    ("1", "PNG", (GRADIENT > 0.5)),
    ("L", "PNG", (GRADIENT * 255).astype(np.uint8)),
    ("L", "JPEG", (GRADIENT * 255).astype(np.uint8)),
    ("I;16", "PNG", (GRADIENT * 65535).astype(np.uint16)),
    ("I", "TIFF", (GRADIENT * 65535).astype(np.int32)),
    ("F", "TIFF", GRADIENT.astype(np.float32)),
    ("RGB", "BMP", np.dstack([(GRADIENT * 255).astype(np.uint8)] * 3)),
    ("CMYK", "JPEG", None),
    ("P", "GIF", None),
    ("RGB", "WEBP", np.dstack([(GRADIENT * 255).astype(np.uint8)] * 3)),
])
def test_every_mode_and_depth_becomes_8_bit(mode: str, fmt: str, pixels: np.ndarray | None) -> None:
    if pixels is None:  # modes made by conversion from an 8-bit RGB gradient
        image = Image.fromarray(np.dstack([(GRADIENT * 255).astype(np.uint8)] * 3)).convert(mode)
    else:
        image = Image.fromarray(pixels)
        assert image.mode.startswith(mode[0])
    grey = np.asarray(decode(encode(image, fmt), LIMIT, "L"), dtype=np.float32)
    assert grey.shape == (16, 64)
    # The gradient survives, dark on the left and light on the right, over the 8-bit range.
    assert grey[:, :4].mean() < 40 and grey[:, -4:].mean() > 215
    assert np.all(np.diff(grey.mean(axis=0)[::8]) >= -2)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(decode(buffer.getvalue(), LIMIT, "L")).max() == 0


def test_not_an_image_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        decode(b"%PDF-1.4 definitely not pixels", LIMIT, "L")
    with pytest.raises(UnsupportedImage):
        decode(b'<svg xmlns="http://www.w3.org/2000/svg"/>', LIMIT, "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_image_is_corrupt(fmt: str) -> None:
    digit = np.repeat(np.repeat(mnist_test()[0][0], 8, axis=0), 8, axis=1)  # 224x224, real content
    data = encode(Image.fromarray(digit).convert("RGB"), fmt)
    with pytest.raises(CorruptImage):
        decode(data[:len(data) // 2], LIMIT, "L")


def test_damaged_png_data_is_corrupt() -> None:
    data = bytearray(encode(mnist_test()[0][0]))
    data[60:80] = b"\xff" * 20  # inside the IDAT chunk: the CRC and the zlib stream break
    with pytest.raises(CorruptImage):
        decode(bytes(data), LIMIT, "L")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns first; we refuse
def test_too_many_pixels_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (12_000, 12_000)))  # 144 Mpx that compress to ~20 kB
    assert len(bomb) < 100_000
    with pytest.raises(TooManyPixels, match="144,000,000 pixels"):
        decode(bomb, LIMIT, "L")
    with pytest.raises(TooManyPixels):
        decode(encode(Image.new("L", (101, 100))), 10_000, "L")


def test_pillows_own_bomb_guard_is_answered_in_our_words() -> None:
    """Past twice Pillow's MAX_IMAGE_PIXELS, Image.open itself refuses: the user still gets the
    limit, not Pillow's exception text."""
    declared = png_declaring(60_000, 60_000)  # 3.6 Gpx, in a header of a few dozen bytes
    with pytest.raises(TooManyPixels) as refused:
        decode(declared, LIMIT, "L")
    message = str(refused.value)
    assert f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels" in message and f"{LIMIT:,}" in message
    assert "DOS" not in message and "decompression bomb" not in message


# --- Limits on what decoding may cost (issue 17) ---------------------------------------------
LIMITS = ImageLimits(pixels=4_000_000, jpeg_pixels=16_000_000)


def test_a_one_pass_jpeg_may_declare_more_pixels_than_it_decodes() -> None:
    """A 12 Mpx photo drafted at 1/2 decodes 3 Mpx: allowed up to jpeg_pixels as declared."""
    photo = encode(Image.new("RGB", (4000, 3000), (90, 120, 200)), "JPEG")
    opened = open_image(photo, LIMITS)
    assert opened.size == (2000, 1500) and decoded_pixels(opened) == 3_000_000
    assert decode(photo, LIMITS, "RGB").size == (1000, 750)
    with pytest.raises(TooManyPixels, match="the limit is 16,000,000"):
        open_image(encode(Image.new("L", (5000, 4000)), "JPEG"), LIMITS)


def test_a_progressive_jpeg_is_held_to_the_full_size_limit() -> None:
    """libjpeg keeps a progressive image's coefficients for every block: no saving from draft."""
    with pytest.raises(TooManyPixels, match="the limit is 4,000,000 for a progressive or multi-scan JPEG"):
        open_image(encode(Image.new("L", (2500, 2000)), "JPEG", progressive=True), LIMITS)


def test_a_jpeg_too_thin_for_a_square_draft_is_drafted_by_its_longer_side() -> None:
    thin = open_image(encode(Image.new("L", (15000, 400), 200), "JPEG"), LIMITS)
    assert thin.size == (1875, 50)  # 1/8: 6 Mpx declared, 94 kpx decoded


def test_webp_counts_the_copies_its_decoder_holds() -> None:
    webp = encode(Image.new("RGB", (1200, 1000)), "WEBP", lossless=True)
    open_image(webp, ImageLimits.of(4_800_000))
    with pytest.raises(TooManyPixels, match="the limit is 1,000,000 for WEBP, whose decoder holds 4 copies"):
        open_image(webp, LIMITS)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "I;16", "I", "F", "1", "CMYK"])
@pytest.mark.parametrize("target", ["L", "RGB"])
def test_shrinking_band_by_band_equals_converting_the_whole_then_reducing(mode: str, target: str) -> None:
    """Large images are converted and reduced a band at a time; the result is what converting
    the whole image and reducing it would give, to the bit."""
    rng = np.random.default_rng(3)
    size = (2 * WORKING_SIZE + 37, 1500)  # a factor of 3, with partial boxes at the right and bottom
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L").convert("P")
        image.info["transparency"] = 7
    elif mode in ("I;16", "I", "F"):
        scale = {"I;16": 65535, "I": 1_000_000, "F": 1.0}[mode]
        values = rng.random(size[::-1]) * scale
        image = Image.fromarray(values.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
        image = image if image.mode == mode else image.convert(mode)
    else:
        image = Image.fromarray(rng.integers(0, 256, (*size[::-1], 4), dtype=np.uint8), "RGBA").convert(mode)
    assert image.mode == mode
    expected = images._flatten(image, target).reduce(3)
    with monkeypatch_band(4096):  # many bands, so band edges are crossed
        shrunk = images._shrunk(image, target)
    assert shrunk.size == expected.size and np.array_equal(np.asarray(shrunk), np.asarray(expected))


class monkeypatch_band:  # noqa: N801 - used as a context manager
    """images.BAND_PIXELS set to `pixels` for the block."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __enter__(self) -> None:
        self.saved, images.BAND_PIXELS = images.BAND_PIXELS, self.pixels

    def __exit__(self, *_: object) -> None:
        images.BAND_PIXELS = self.saved


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_read_as_pillow_reads_it(fmt: str, orientation: int) -> None:
    """The orientation is read without Pillow's getexif (which parses every entry in Python),
    and gives the same upright image as ImageOps.exif_transpose for every orientation."""
    stored = Image.fromarray(np.arange(48 * 30, dtype=np.uint32).reshape(30, 48).astype(np.uint8)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "Camera"
    options = {"tiffinfo": {274: orientation}} if fmt == "TIFF" else {"exif": exif}
    data = encode(stored, fmt, **({"quality": 100} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP"
                                  else {}), **options)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L")
    assert np.array_equal(np.asarray(decode(data, LIMIT, "L")), np.asarray(expected))


def test_an_exif_block_of_65535_entries_is_read_quickly() -> None:
    entries = b"".join(struct.pack("<HHII", 0x9000 + i % 0x6000, 3, 1, 1) for i in range(65535))
    exif = b"Exif\0\0II*\0" + struct.pack("<I", 8) + struct.pack("<H", 65535) + entries + b"\0\0\0\0"
    image = Image.new("RGB", (8, 8))
    image.info["exif"] = exif
    started = time.process_time()
    assert images._orientation(image) == 1
    assert time.process_time() - started < 1.0  # Pillow's getexif takes about 0.3 s on this block
