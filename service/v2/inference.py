"""The one inference function behind both edges (HTTP and gRPC), and how a request is counted.

A request carries one of the model's two inputs:

- `image`, FP32 [N, C, H, W], already normalised with the card's mean/std: exactly the tensor
  Triton takes for the same model folder, so equal tensors get equal answers on both;
- `image_bytes`, BYTES [N] (or [N, 1]): encoded images (PNG, JPEG, ...), each decoded and
  preprocessed as /predict does it, one after another, under the same limits and the same
  per-request budget as /batch.

Either way its N rows are N submits to the model's batcher, gathered concurrently: they share
ONNX Runtime calls with one another and with every other request, /predict's included, and
each row's answer equals its unbatched one. The outputs are `logits` (what the graph computes)
and `probabilities` (their softmax, as /predict reports them, in FP32), each also available as
Triton's classification extension: the k best classes as "value:index:label" strings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from modelrepo.layout import INPUT_NAME, MODEL_VERSION, OUTPUT_NAME
from service.batching import BatcherStopped
from service.catalog import Serving
from service.errors import ModelUnavailable, ServiceError, TooManyImages
from service.predict import PixelBudget, image_input
from service.v2.errors import InvalidTensor, UnknownVersion, http_status
from service.v2.tensors import BYTES, FP32, InferenceRequest, RequestedOutput, Tensor

if TYPE_CHECKING:
    from service.routes import ServiceState

IMAGE = INPUT_NAME
IMAGE_BYTES = "image_bytes"
LOGITS = OUTPUT_NAME
PROBABILITIES = "probabilities"
OUTPUTS = (LOGITS, PROBABILITIES)


@dataclass(frozen=True)
class Inference:
    model_id: str
    model_version: str
    outputs: list[Tensor]


def serving(state: ServiceState, model_id: str, version: str | None) -> Serving:
    """The model at `version` ("" or None: the one there is), if it can answer now."""
    found = state.catalog.serving(model_id)
    check_version(model_id, version)
    return found


def check_version(model_id: str, version: str | None) -> None:
    """UnknownVersion unless `version` is the one version a model has ("" or None: that one)."""
    if version not in (None, "", MODEL_VERSION):
        raise UnknownVersion(f"model {model_id!r} has no version {version!r}; it has version {MODEL_VERSION}")


async def infer(state: ServiceState, model_id: str, version: str | None, request: InferenceRequest) -> Inference:
    found = serving(state, model_id, version)
    rows = await _rows(state, found, _the_input(request))
    try:
        answers = await asyncio.gather(*(found.batcher.submit(row) for row in rows))
    except BatcherStopped as err:
        raise ModelUnavailable(f"model {model_id!r} is shutting down") from err
    scores = {LOGITS: np.stack([row.logits for row, _ in answers]),
              PROBABILITIES: np.stack([row.probabilities for row, _ in answers]).astype(np.float32)}
    wanted = request.outputs if request.outputs is not None else [RequestedOutput(name) for name in OUTPUTS]
    return Inference(model_id, MODEL_VERSION, [_output(w, scores, found.model.card.classes) for w in wanted])


def _the_input(request: InferenceRequest) -> Tensor:
    names = [tensor.name for tensor in request.inputs]
    if len(names) != 1 or names[0] not in (IMAGE, IMAGE_BYTES):
        raise InvalidTensor(f"send exactly one input, {IMAGE!r} (FP32 [N, C, H, W], normalised) or "
                            f"{IMAGE_BYTES!r} (BYTES [N], encoded images); got {names or 'none'}")
    return request.inputs[0]


async def _rows(state: ServiceState, found: Serving, tensor: Tensor) -> list[np.ndarray]:
    """The tensor's N inputs to the model, each C×H×W float32."""
    card, limit = found.model.card, state.settings.max_batch_images
    expected = [card.input.shape] if tensor.name == IMAGE else [[], [1]]
    datatype = FP32 if tensor.name == IMAGE else BYTES
    if tensor.datatype != datatype or len(tensor.shape) < 1 or list(tensor.shape[1:]) not in expected:
        wanted = f"[N, {', '.join(map(str, card.input.shape))}]" if tensor.name == IMAGE else "[N]"
        raise InvalidTensor(f"input {tensor.name!r} is {tensor.datatype} {list(tensor.shape)}; "
                            f"model {found.model.id!r} takes {datatype} {wanted}")
    count = tensor.shape[0]
    if count < 1:
        raise InvalidTensor(f"input {tensor.name!r} holds no image (N = 0)")
    if count > limit:
        raise TooManyImages(f"input {tensor.name!r} holds {count} images; the limit is {limit} "
                            "(CNNZOO_MAX_BATCH_IMAGES)")
    if tensor.name == IMAGE:  # any float32 values, NaN included, as Triton takes them (perf_analyzer sends random bits)
        return list(tensor.values)
    budget = state.decoding.budget()  # one after another, as /batch decodes: never all held at once
    return [await _decoded(state, found, i, data, budget) for i, data in enumerate(tensor.values)]


async def _decoded(state: ServiceState, found: Serving, index: int, data: bytes, budget: PixelBudget) -> np.ndarray:
    try:
        return await image_input(found.model, data, state.decoding, budget)
    except ServiceError as err:
        raise type(err)(f"{IMAGE_BYTES}[{index}]: {err.detail}") from None


def _output(wanted: RequestedOutput, scores: dict[str, np.ndarray], classes: list[str]) -> Tensor:
    if wanted.name not in scores:
        raise InvalidTensor(f"no output {wanted.name!r}; the model has {', '.join(map(repr, OUTPUTS))}")
    values = scores[wanted.name]
    if not wanted.classification:
        return Tensor(wanted.name, FP32, values.shape, values)
    k = min(wanted.classification, len(classes))  # more than there are: all of them, as /predict's top_k
    best = np.argsort(-values, axis=1, kind="stable")[:, :k]
    labels = [f"{float(row[i]):f}:{i}:{classes[i]}".encode() for row, order in zip(values, best) for i in order]
    return Tensor(wanted.name, BYTES, (len(values), k), labels)
