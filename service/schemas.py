"""The API's shapes as msgspec Structs: what the handlers return and what /schema shows.

`Card` is also how card.json is read: msgspec checks its types on load, and a card that does
not fit makes its model unavailable with the reason, instead of failing a request later.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

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


class Preprocessing(msgspec.Struct):
    kind: Literal["digit", "photo"]
    mean: list[float]
    std: list[float]


class ModelInput(msgspec.Struct):
    name: str
    shape: list[int]  # C, H, W (the batch axis is left out)
    dtype: Literal["float32"]
    layout: Literal["NCHW"]


class ModelOutput(msgspec.Struct):
    name: str
    shape: list[int]  # number of classes


class Card(msgspec.Struct, kw_only=True):
    """card.json as docs/model-repository.md defines it. Fields the service cannot serve
    without (classes, input, output, preprocessing, onnx_sha256) are checked on load."""

    id: str
    arch: str | None = None
    dataset: str | None = None
    description: str | None = None
    classes: list[str] | None = None
    input: ModelInput | None = None
    output: ModelOutput | None = None
    preprocessing: Preprocessing | None = None
    test_accuracy: float | None = None
    onnx_sha256: str | None = None
    onnx_bytes: int | None = None
    weights_sha256: str | None = None
    parity: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    exporter: dict[str, Any] | None = None
    exported: str | None = None


class ModelCard(Card, kw_only=True):
    """GET /models/{model}: the card (fields null where it could not be read) plus status."""

    status: ModelStatus
    error: str | None = None
    provider: str | None = None


class ModelSummary(msgspec.Struct):
    id: str
    arch: str | None
    dataset: str | None
    classes: list[str] | None
    preprocessing: Preprocessing | None
    test_accuracy: float | None
    provider: str | None
    status: ModelStatus
    error: str | None


class ModelList(msgspec.Struct):
    models: list[ModelSummary]


class Liveness(msgspec.Struct):
    status: Literal["live"]


class Readiness(msgspec.Struct):
    """`ready` once every model has been tried and at least one serves."""

    status: Literal["ready", "loading", "unavailable"]
    ready: list[str]
    loading: list[str]
    unavailable: dict[str, str]  # model id -> why
