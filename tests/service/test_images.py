"""Decoding untrusted bytes: orientation, transparency, every mode and depth, and each failure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from testkit.fixture_images import encode, mnist_test
from PIL import Image

from service.errors import CorruptImage, TooManyPixels, UnsupportedImage
from service.images import decode

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
