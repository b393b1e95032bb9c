"""Real fixture images for the service tests, read without torch and encoded as real files.

MNIST: the IDX files under tests/fixtures/MNIST/raw (500 test digits). CIFAR-10: the binary
test batch (500 records of 3,073 bytes). Both formats are parsed here directly.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """(images N×28×28 uint8, labels N)."""
    raw = FIXTURES / "MNIST" / "raw"
    return read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte")


def cifar_test() -> tuple[np.ndarray, np.ndarray]:
    """(images N×32×32×3 uint8, labels N)."""
    records = np.fromfile(FIXTURES / "cifar-10-batches-bin" / "test_batch.bin", dtype=np.uint8)
    records = records.reshape(-1, CIFAR_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), records[:, 0].copy()


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def ink_on_paper(digit: np.ndarray, rng: np.random.Generator, canvas=(480, 360), scale: int = 4) -> Image.Image:
    """An MNIST digit inverted to dark-on-light, enlarged `scale` times, placed off-centre in a
    large white canvas."""
    size = digit.shape[0] * scale
    enlarged = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    page = Image.new("L", canvas, 255)
    page.paste(enlarged, (int(rng.integers(0, canvas[0] - size)), int(rng.integers(0, canvas[1] - size))))
    return page


def photo_of_paper(digit: np.ndarray, rng: np.random.Generator, canvas=(480, 360), scale: int = 5) -> Image.Image:
    """An MNIST digit as a phone photo of it would look: dark-grey ink on grey paper lit
    unevenly, sensor grain, a little blur, off-centre, in colour."""
    size = digit.shape[0] * scale
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    width, height = canvas
    paper = 165 + 65 * np.linspace(0, 1, width)[None, :] + rng.normal(0, 6, (height, width))
    top, left = int(rng.integers(10, height - size - 10)), int(rng.integers(10, width - size - 10))
    region = paper[top:top + size, left:left + size]
    paper[top:top + size, left:left + size] = region * (1 - ink) + 45 * ink
    grey = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    tint = np.asarray(grey, np.float32)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)  # warm light
    return Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))
