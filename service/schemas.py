"""The API's shapes as msgspec Structs: what the handlers return and what /schema shows.

The model card itself is the repository's contract (`modelrepo.card.Card`); the answers that
carry it extend it here.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from modelrepo.card import Card, Preprocessing
from service.errors import ErrorBody

ModelStatus = Literal["loading", "ready", "unavailable"]


class ClassScore(msgspec.Struct):
    label: str
    index: int
    probability: float


class Timings(msgspec.Struct):
    """Milliseconds: decoding and preprocessing, waiting for a batch and a worker, the ONNX
    Runtime call (shared by the whole batch), and the request from handler entry to answer."""

    decode: float
    queue: float
    inference: float
    total: float


class Prediction(msgspec.Struct, omit_defaults=True):
    """One image's answer; `input_png` only when asked for (`?include=input`)."""

    model: str
    label: str
    index: int
    probability: float
    top_k: list[ClassScore]
    provider: str
    timings_ms: Timings
    # The model's input as a base64 PNG: the 28x28 digit field or the 32x32 photo, after
    # preprocessing, with the mean/std normalisation undone (what the model saw).
    input_png: str | None = None


class BatchItem(msgspec.Struct, omit_defaults=True):
    """One image of a batch: exactly a `Prediction` when it was classified, exactly an
    `ErrorBody` ({"error", "detail"}) when it was not; absent keys are left out."""

    model: str | None = None
    label: str | None = None
    index: int | None = None
    probability: float | None = None
    top_k: list[ClassScore] | None = None
    provider: str | None = None
    timings_ms: Timings | None = None
    input_png: str | None = None
    error: str | None = None
    detail: str | None = None

    @classmethod
    def of(cls, answer: Prediction | ErrorBody) -> BatchItem:
        return cls(**msgspec.structs.asdict(answer))


class BatchPrediction(msgspec.Struct):
    """One entry per uploaded image, in upload order."""

    model: str
    results: list[BatchItem]


class ModelCard(Card, kw_only=True):
    """GET /models/{model} for a model whose card could be read: the card, plus its status."""

    status: ModelStatus
    error: str | None = None
    provider: str | None = None


class ModelState(msgspec.Struct):
    """GET /models/{model} for a model whose card could not be read: why it does not serve."""

    id: str
    status: ModelStatus
    error: str | None = None
    provider: str | None = None


class ModelSummary(msgspec.Struct):
    id: str
    arch: str | None
    dataset: str | None
    classes: list[str] | None
    preprocessing: Preprocessing | None
    input_method: Literal["draw", "upload"] | None  # how the web page asks for an image
    precision: Literal["fp32", "int8"] | None  # what the graph computes in
    test_accuracy: float | None
    provider: str | None
    status: ModelStatus
    error: str | None
    max_batch: int | None  # most images in one of its ONNX Runtime calls, once it serves


class ServerPlan(msgspec.Struct):
    """How this server runs: what CNNZOO_WORKERS=auto chose (or what was set), and why."""

    workers: int  # server processes, each with every model
    ort_threads: int  # ONNX Runtime intra-op threads per model
    # Most inputs in one ONNX Runtime call (CNNZOO_MAX_BATCH; auto: 32 with a GPU, else null:
    # each model's own, 8 to 32 on a CPU, in its `max_batch`).
    max_batch: int | None
    chosen_by: str  # e.g. "auto: 2 CPUs, no NVIDIA GPU"


class ModelList(msgspec.Struct):
    models: list[ModelSummary]
    server: ServerPlan


class Liveness(msgspec.Struct):
    status: Literal["live"]


class Readiness(msgspec.Struct):
    """`ready` once every model has been tried and at least one serves."""

    status: Literal["ready", "loading", "unavailable"]
    ready: list[str]
    loading: list[str]
    unavailable: dict[str, str]  # model id -> why
