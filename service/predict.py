"""One image -> one `Prediction`: decode, batch, top-k, timings.

Decoding is bounded (`Decoding`): per process, at most `slots` images are opened and decoded at
once, in the worker threads, and one worker thread is always left to ONNX Runtime, so a small
request never waits behind a large decode; per request, the images are decoded one after
another, drawing on one `PixelBudget`, so a batch never holds more than one decoded image and
never decodes more than CNNZOO_MAX_REQUEST_PIXELS in all.

Tiny images (an MNIST-sized PNG: a few KB, at most 64x64 px) are decoded on the event loop:
handing them to a thread costs more than decoding them, and the hand-over makes the loop wait
for the GIL. Tiny means both: an 8x8 PNG can carry 9.5 MB of chunks. The plainest of them
(8-bit grey or RGB PNGs with nothing else in them) skip Pillow (`service.tiny_png`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import AsyncIterable
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from service import tiny_png
from service.batching import BatcherStopped
from service.catalog import Serving
from service.errors import EmptyBody, ModelUnavailable, ServiceError, TooManyPixels
from service.images import ImageLimits, decoded_pixels, open_image
from service.preprocess import InputSpec, preprocess_image, preprocess_pixels, to_pixels
from service.repository import LoadedModel
from service.schemas import ClassScore, Prediction, Timings
from service.settings import Settings

INLINE_DECODE_PIXELS = 64 * 64
INLINE_DECODE_BYTES = 8 * 1024


class PixelBudget:
    """The decoded pixels one request may still spend; an image past it is refused (413)."""

    def __init__(self, pixels: int) -> None:
        self.total = self.left = pixels
        self._lock = threading.Lock()  # drawn on from worker threads

    def take(self, pixels: int) -> None:
        with self._lock:
            if pixels > self.left:
                raise TooManyPixels(f"this image decodes to {pixels:,} pixels and the request's images have "
                                    f"{self.left:,} of their {self.total:,} left (CNNZOO_MAX_REQUEST_PIXELS)")
            self.left -= pixels


class Decoding:
    """The worker threads' share for decoding, and the limits every image is decoded under."""

    def __init__(self, executor: Executor, limits: ImageLimits, request_pixels: int, slots: int) -> None:
        self.executor, self.limits, self.request_pixels = executor, limits, request_pixels
        self._slots = asyncio.Semaphore(slots)

    @classmethod
    def for_settings(cls, settings: Settings, executor: Executor) -> Decoding:
        """Decoding takes every worker thread but one (and at least one)."""
        return cls(executor, ImageLimits(pixels=settings.max_image_pixels, jpeg_pixels=settings.max_jpeg_pixels),
                   settings.max_request_pixels, slots=max(1, settings.worker_threads - 1))

    def budget(self) -> PixelBudget:
        """A new request's budget."""
        return PixelBudget(self.request_pixels)

    async def input(self, spec: InputSpec, data: bytes, budget: PixelBudget) -> np.ndarray:
        """One encoded image -> the model's normalised C×H×W input."""
        if not data:
            raise EmptyBody("the image is empty (0 bytes)")
        opened = None
        if len(data) <= INLINE_DECODE_BYTES:
            pixels = tiny_png.decode(data)  # an MNIST-style PNG: without Pillow, same pixels
            if pixels is not None and pixels.shape[0] * pixels.shape[1] <= self.limits.pixels:
                budget.take(pixels.shape[0] * pixels.shape[1])
                return preprocess_pixels(pixels, spec)
            opened = open_image(data, self.limits)  # a few KB of header: cheap
            if decoded_pixels(opened) <= INLINE_DECODE_PIXELS:
                return self._decode(data, opened, spec, budget)
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, self._decode, data, opened, spec, budget)

    def _decode(self, data: bytes, opened: Image.Image | None, spec: InputSpec, budget: PixelBudget) -> np.ndarray:
        image = opened if opened is not None else open_image(data, self.limits)
        budget.take(decoded_pixels(image))
        return preprocess_image(image, spec)


async def predict_image(serving: Serving, data: bytes, top_k: int, *, decoding: Decoding, budget: PixelBudget,
                        started: float, include_input: bool = False) -> Prediction:
    """Classify one encoded image; `started` is when the request reached the handler.
    `include_input` adds the model's input as a PNG (`Prediction.input_png`)."""
    decode_start = time.perf_counter()
    x = await image_input(serving.model, data, decoding, budget)
    return await predict_input(serving, x, top_k, decode_s=time.perf_counter() - decode_start, started=started,
                               include_input=include_input)


async def predict_images(serving: Serving, images: AsyncIterable[bytes], top_k: int, *, decoding: Decoding,
                         started: float, include_input: bool = False) -> list[Prediction | ServiceError]:
    """Classify a request's images, in order; one that cannot be read or answered gets its
    error in its place. They are decoded one after another (never all held at once), each
    sent on to the batcher as soon as it is ready, under one budget."""
    budget = decoding.budget()

    async def answer(x: np.ndarray, decode_s: float) -> Prediction | ServiceError:
        try:
            return await predict_input(serving, x, top_k, decode_s=decode_s, started=started,
                                       include_input=include_input)
        except ServiceError as err:
            return err

    entries: list[ServiceError | asyncio.Task[Prediction | ServiceError]] = []
    async with asyncio.TaskGroup() as answers:
        async for data in images:
            decode_start = time.perf_counter()
            try:
                x = await image_input(serving.model, data, decoding, budget)
            except ServiceError as err:
                entries.append(err)
                continue
            entries.append(answers.create_task(answer(x, time.perf_counter() - decode_start)))
    return [entry.result() if isinstance(entry, asyncio.Task) else entry for entry in entries]


async def predict_input(serving: Serving, x: np.ndarray, top_k: int, *, decode_s: float, started: float,
                        include_input: bool = False) -> Prediction:
    """Classify one decoded, preprocessed input (from `image_input`)."""
    model = serving.model
    try:
        row, timing = await serving.batcher.submit(x)
    except BatcherStopped as err:
        raise ModelUnavailable(f"model {model.id!r} is shutting down") from err
    scores = top_classes(row.probabilities, model.card.classes, top_k)
    seen = input_png(x, model.spec) if include_input else None
    return Prediction(
        model=model.id, label=scores[0].label, index=scores[0].index, probability=scores[0].probability,
        top_k=scores, provider=model.provider,
        timings_ms=Timings(decode=_ms(decode_s), queue=_ms(timing.queue_s), inference=_ms(timing.inference_s),
                           total=_ms(time.perf_counter() - started)),
        input_png=seen)


def input_png(x: np.ndarray, spec: InputSpec) -> str:
    """The model's input, rendered back to 8-bit pixels, as a base64 PNG (a few hundred bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(to_pixels(x, spec)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def image_input(model: LoadedModel, data: bytes, decoding: Decoding, budget: PixelBudget) -> np.ndarray:
    """One encoded image -> the model's normalised C×H×W input (also the v2 protocol's `image_bytes`)."""
    return await decoding.input(model.spec, data, budget)


def top_classes(probabilities: np.ndarray, classes: list[str], k: int) -> list[ClassScore]:
    """The k most probable classes of one row of probabilities, most probable first."""
    row = probabilities.tolist()  # plain Python: a numpy sort would release the GIL on the loop
    order = sorted(range(len(row)), key=lambda i: -row[i])[:max(1, min(k, len(row)))]
    return [ClassScore(label=classes[i], index=i, probability=row[i]) for i in order]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
