"""One image -> one `Prediction`: decode, batch, top-k, timings.

Tiny images (an MNIST-sized PNG) are decoded on the event loop: handing them to a thread
costs more than decoding them, and the thread hand-over makes the loop wait for the GIL.
Anything larger is decoded in a worker thread, so the loop never stalls on it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from service.batching import BatcherStopped
from service.catalog import Serving
from service.errors import EmptyBody, ModelUnavailable
from service.images import open_image
from service.preprocess import InputSpec, preprocess_image, to_pixels
from service.repository import LoadedModel
from service.schemas import ClassScore, Prediction, Timings

INLINE_DECODE_PIXELS = 64 * 64


async def predict_image(serving: Serving, data: bytes, top_k: int, *, executor: Executor,
                        max_pixels: int, started: float, include_input: bool = False) -> Prediction:
    """Classify one encoded image; `started` is when the request reached the handler.
    `include_input` adds the model's input as a PNG (`Prediction.input_png`)."""
    model = serving.model
    decode_start = time.perf_counter()
    x = await image_input(model, data, executor=executor, max_pixels=max_pixels)
    decode_s = time.perf_counter() - decode_start
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


async def image_input(model: LoadedModel, data: bytes, *, executor: Executor, max_pixels: int) -> np.ndarray:
    """One encoded image -> the model's normalised C×H×W input (also the v2 protocol's `image_bytes`)."""
    if not data:
        raise EmptyBody("the image is empty (0 bytes)")
    image = open_image(data, max_pixels)  # the header only: format and size checked
    if image.width * image.height <= INLINE_DECODE_PIXELS:
        return preprocess_image(image, model.spec)
    return await asyncio.get_running_loop().run_in_executor(executor, preprocess_image, image, model.spec)


def top_classes(probabilities: np.ndarray, classes: list[str], k: int) -> list[ClassScore]:
    """The k most probable classes of one row of probabilities, most probable first."""
    row = probabilities.tolist()  # plain Python: a numpy sort would release the GIL on the loop
    order = sorted(range(len(row)), key=lambda i: -row[i])[:max(1, min(k, len(row)))]
    return [ClassScore(label=classes[i], index=i, probability=row[i]) for i in order]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)

