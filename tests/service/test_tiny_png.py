"""Plain small PNGs decoded without Pillow (service/tiny_png.py): Pillow's pixels to the bit on
what it takes, None (so Pillow reads it) on everything else, and the service's answers unchanged."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from service import strokes, tiny_png
from service.app import use_c_modules
from service.errors import TooManyPixels
from service.images import ImageLimits, open_image
from service.predict import Decoding
from service.preprocess import InputSpec, preprocess_image, preprocess_pixels
from service.settings import Settings
from testkit.fixture_images import cifar_test, encode, mnist_test
from training.datasets import DATASETS

MNIST, CIFAR = DATASETS["mnist"], DATASETS["cifar10"]
DIGIT = InputSpec(kind="digit", channels=1, height=28, width=28, mean=MNIST.mean, std=MNIST.std)
PHOTO = InputSpec(kind="photo", channels=3, height=32, width=32, mean=CIFAR.mean, std=CIFAR.std)


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) if crc is None else crc)


def filtered(pixels: np.ndarray, filters: list[int]) -> bytes:
    """The PNG rows of `pixels` (H×W or H×W×C uint8), row r under filter filters[r % len]."""
    rows = pixels.reshape(pixels.shape[0], -1).astype(np.int32)
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    out = bytearray()
    for r, row in enumerate(rows):
        up = rows[r - 1] if r else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        kind = filters[r % len(filters)]
        if kind == 4:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        else:
            predicted = [np.zeros_like(row), left, up, (left + up) // 2][kind]
        out += bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def png(pixels: np.ndarray, filters=(0, 1, 2, 3, 4), *, before_idat=(), after_idat=(), idat_parts: int = 1,
        depth: int = 8, colour: int | None = None, interlace: int = 0, data: bytes | None = None,
        tail: bytes = b"") -> bytes:
    """A PNG written by hand, so that every filter, chunk order and flaw can be asked for."""
    height, width = pixels.shape[:2]
    colour = (0 if pixels.ndim == 2 else 2) if colour is None else colour
    stream = zlib.compress(filtered(pixels, list(filters))) if data is None else data
    cut = [len(stream) * i // idat_parts for i in range(idat_parts + 1)]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
            + b"".join(before_idat) + b"".join(chunk(b"IDAT", stream[a:b]) for a, b in zip(cut, cut[1:]))
            + b"".join(after_idat) + chunk(b"IEND", b"") + tail)


def pillow_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image)


def test_the_c_module_is_built() -> None:
    # setup.py builds it as optional; without it every PNG goes to Pillow, and this file would
    # test nothing of what ships.
    assert tiny_png.native is not None, "service._tinypng is not built: `pip install -e .` with a C compiler"


def test_pillow_reads_the_hand_written_pngs_alike() -> None:
    # The helper itself: Pillow decodes its files to the pixels they were made from.
    rng = np.random.default_rng(1)
    for pixels in (rng.integers(0, 256, (9, 7), np.uint8), rng.integers(0, 256, (5, 6, 3), np.uint8)):
        np.testing.assert_array_equal(pillow_pixels(png(pixels)), pixels)


def test_real_images_decode_to_pillows_pixels() -> None:
    digits, photos = mnist_test()[0][:150], cifar_test()[0][:50]
    files = [encode(d) for d in digits] + [encode(p) for p in photos]
    files += [encode(d, optimize=True) for d in digits[:20]] + [encode(d, compress_level=0) for d in digits[:20]]
    files += [encode(Image.fromarray(p).convert("L")) for p in photos[:20]]
    for data in files:
        pixels = tiny_png.decode(data)
        assert pixels is not None, "a plain 8-bit PNG from Pillow is taken"
        np.testing.assert_array_equal(pixels, pillow_pixels(data))


@pytest.mark.parametrize("shape", [(1, 1), (1, 64), (64, 1), (64, 64), (17, 23, 3), (1, 1, 3)])
@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)])
def test_every_filter_and_size_decodes_to_pillows_pixels(shape, filters) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, np.uint8)
    for data in (png(pixels, filters), png(pixels, filters, idat_parts=3),
                 png(pixels, filters, before_idat=[chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"sRGB", b"\0")],
                     after_idat=[chunk(b"tIME", bytes(7))])):
        decoded = tiny_png.decode(data)
        assert decoded is not None
        np.testing.assert_array_equal(decoded, pillow_pixels(data))
        np.testing.assert_array_equal(decoded, pixels)


def test_anything_else_is_left_to_pillow() -> None:
    pixels = mnist_test()[0][0]
    good = png(pixels)
    stream = zlib.compress(filtered(pixels, [0]))
    refused = {
        "65 px wide": png(np.zeros((2, 65), np.uint8)),
        "16-bit": png(pixels, depth=16, data=zlib.compress(filtered(np.repeat(pixels, 2, axis=1), [0]))),
        "grey + alpha": png(np.zeros((4, 4, 2), np.uint8), colour=4),
        "RGBA": png(np.zeros((4, 4, 4), np.uint8), colour=6),
        "interlaced": png(pixels, interlace=1),
        "transparency (tRNS)": png(pixels, before_idat=[chunk(b"tRNS", b"\0\0")]),
        "text (may hold EXIF)": png(pixels, after_idat=[chunk(b"tEXt", b"Comment\0hi")]),
        "EXIF": png(pixels, before_idat=[chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0")]),
        "a truncated gAMA (Pillow refuses it)": png(pixels, before_idat=[chunk(b"gAMA", b"\0\0")]),
        "a bad CRC": good[:33] + chunk(b"IDAT", stream, crc=1) + good[-12:],
        "bytes after IEND": png(pixels, tail=b"\0"),
        "cut short": good[:-6],
        "IDATs apart": b"".join([good[:33], chunk(b"IDAT", stream[:10]), chunk(b"gAMA", bytes(4)),
                                 chunk(b"IDAT", stream[10:]), chunk(b"IEND", b"")]),
        "short data": png(pixels, data=zlib.compress(filtered(pixels, [0])[:-1])),
        "long data": png(pixels, data=zlib.compress(filtered(pixels, [0]) + b"\0")),
        "zlib stream unfinished": png(pixels, data=zlib.compress(filtered(pixels, [0]))[:-4]),
        "data after the zlib stream": png(pixels, data=zlib.compress(filtered(pixels, [0])) + b"\0"),
        "filter byte 5": png(pixels, data=zlib.compress(b"\x05" + filtered(pixels, [0])[1:])),
        "not a PNG": b"GIF89a" + good[6:],
        "empty": b"",
    }
    assert tiny_png.decode(good) is not None
    for name, data in refused.items():
        assert tiny_png.decode(data) is None, name


def test_the_service_answers_as_with_pillow() -> None:
    # What the model gets is the same array either way, for each conversion the models ask for.
    digits, photos = mnist_test()[0][:40], cifar_test()[0][:20]
    cases = [(encode(d), DIGIT) for d in digits] + [(encode(p), PHOTO) for p in photos]
    cases += [(encode(p), DIGIT) for p in photos[:10]]  # RGB sent to a digit model
    cases += [(encode(d), PHOTO) for d in digits[:10]]  # grey sent to a photo model (and resized)
    for data, spec in cases:
        fast = preprocess_pixels(tiny_png.decode(data), spec)
        slow = preprocess_image(open_image(data, 10**8), spec)
        assert fast.dtype == slow.dtype == np.float32
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.anyio
async def test_decoding_keeps_the_pixel_limits() -> None:
    data = encode(mnist_test()[0][0])  # 784 pixels
    with ThreadPoolExecutor(1) as executor:
        small = Decoding(executor, ImageLimits(pixels=700, jpeg_pixels=700), request_pixels=10**6, slots=1)
        with pytest.raises(TooManyPixels):
            await small.input(DIGIT, data, small.budget())
        roomy = Decoding(executor, ImageLimits(pixels=10**6, jpeg_pixels=10**6), request_pixels=1000, slots=1)
        budget = roomy.budget()
        await roomy.input(DIGIT, data, budget)
        assert budget.left == 1000 - 784, "the request's pixel budget is drawn on"
        with pytest.raises(TooManyPixels):
            await roomy.input(DIGIT, data, budget)


def test_damaged_files_it_takes_pillow_reads_to_the_same_pixels() -> None:
    # Damage with the CRCs made right again (so the damage reaches the parser and the decoder):
    # every file it still takes, Pillow reads without error, to the same pixels.
    rng = np.random.default_rng(2)
    seeds = [encode(d) for d in mnist_test()[0][:10]] + [encode(p) for p in cifar_test()[0][:3]]
    taken = 0
    for i in range(3000):
        chunks = split_chunks(seeds[i % len(seeds)])
        k = int(rng.integers(0, len(chunks)))
        kind, body = chunks[k]
        if kind == b"IDAT" and rng.random() < 0.5:  # altered rows, recompressed
            raw = bytearray(zlib.decompress(body))
            raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
            chunks[k] = (kind, zlib.compress(bytes(raw[:len(raw) - int(rng.integers(0, 2))])))
        elif body:
            damaged = bytearray(body)
            damaged[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
            chunks[k] = (kind, bytes(damaged))
        if rng.random() < 0.2:  # a stray chunk somewhere
            stray = (bytes(rng.choice([b"gAMA", b"pHYs", b"tEXt", b"IDAT", b"IEND"])),
                     rng.integers(0, 256, int(rng.integers(0, 10)), np.uint8).tobytes())
            chunks.insert(int(rng.integers(1, len(chunks))), stray)
        data = b"\x89PNG\r\n\x1a\n" + b"".join(chunk(kind, body) for kind, body in chunks)
        pixels = tiny_png.decode(data)
        if pixels is not None:
            taken += 1
            np.testing.assert_array_equal(pixels, pillow_pixels(data))
    assert 500 < taken < 2900, "some damage is harmless to both (a changed pixel), most is refused"


def split_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def test_cnnzoo_c_modules_off_leaves_the_work_to_pillow_and_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (strokes, tiny_png):  # restored after the test: the switch is for a whole process
        monkeypatch.setattr(module, "native", module.native)
    data = encode(mnist_test()[0][0])
    assert use_c_modules(True) == "_digitfield, _tinypng" and tiny_png.decode(data) is not None
    assert not Settings.from_env({"CNNZOO_C_MODULES": "off"}).c_modules
    assert use_c_modules(False).startswith("off")
    assert tiny_png.decode(data) is None and not strokes.takes_native(mnist_test()[0][0])
