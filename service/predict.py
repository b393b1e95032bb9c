"""One image -> one `Prediction`: decode in a worker thread, batch, softmax, top-k, timings."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import numpy as np

from service.batching import BatcherStopped
from service.errors import EmptyBody, ModelUnavailable
from service.preprocess import InputSpec, preprocess
from service.repository import ServedModel
from service.schemas import ClassScore, Prediction, Timings


async def predict_image(model: ServedModel, data: bytes, top_k: int, *, executor: Executor,
                        max_pixels: int, started: float) -> Prediction:
    """Classify one encoded image; `started` is when the request reached the handler."""
    if not data:
        raise EmptyBody("the image is empty (0 bytes)")
    loop = asyncio.get_running_loop()
    x, decode_s = await loop.run_in_executor(executor, _timed_preprocess, data, model.spec, max_pixels)
    try:
        logits, timing = await model.batcher.submit(x)
    except BatcherStopped as err:
        raise ModelUnavailable(f"model {model.id!r} is shutting down") from err
    scores = top_classes(logits, model.card.classes, top_k)
    return Prediction(
        model=model.id, label=scores[0].label, index=scores[0].index, probability=scores[0].probability,
        top_k=scores, provider=model.provider,
        timings_ms=Timings(decode=_ms(decode_s), queue=_ms(timing.queue_s), inference=_ms(timing.inference_s),
                           total=_ms(time.perf_counter() - started)))


def top_classes(logits: np.ndarray, classes: list[str], k: int) -> list[ClassScore]:
    """The k most probable classes (softmax of the logits), most probable first."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")[:max(1, min(k, len(classes)))]
    return [ClassScore(label=classes[i], index=int(i), probability=float(probabilities[i])) for i in order]


def _timed_preprocess(data: bytes, spec: InputSpec, max_pixels: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    x = preprocess(data, spec, max_pixels)
    return x, time.perf_counter() - start


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
