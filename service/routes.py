"""The HTTP handlers: thin, reading the request and handing the work to plain modules.

`POST /predict/{model}` with a raw image body is usually answered before Litestar's router, by
service/raw_predict.py; both run `predict_upload`, so the route means the same either way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter

from service import openapi
from service.catalog import Catalog
from service.errors import (BadParameter, EmptyBody, ErrorBody, MissingFile, ServiceError, TooManyImages,
                            UnsupportedMediaType)
from service.guards import ANY_HOST, RequestGuard
from service.metrics import Metrics
from service.predict import Decoding, predict_image, predict_images
from service.machine import Plan
from service.preprocess import KINDS
from service.schemas import (BatchItem, BatchPrediction, Liveness, ModelCard, ModelList, ModelState, ModelSummary,
                             Prediction, Readiness, ServerPlan)
from service.settings import Settings
from service.uploads import read_body, read_form

RAW_BODY_HINT = ("send the image as the multipart field 'file' (curl -F file=@digit.png) or as the raw body "
                 "with an image Content-Type (curl -H 'Content-Type: image/png' --data-binary @digit.png)")


@dataclass
class ServiceState:
    """What the handlers need, built by create_app and held on app.state."""

    settings: Settings
    catalog: Catalog
    metrics: Metrics
    executor: Executor
    plan: Plan  # server processes and ONNX Runtime threads, as chosen for this machine
    decoding: Decoding  # the worker threads' share for decoding, and the image limits
    guard: RequestGuard  # the app's middleware, for the hot path that runs before it (service/raw_predict.py)


def _state(request: Request) -> ServiceState:
    return request.app.state.service


TopK = Annotated[int, Parameter(ge=1, description="how many classes to return, most probable first "
                                "(more than the model has: all of them)")]
INCLUDABLE = ("input",)
Include = Annotated[str | None, Parameter(description=(
    "extra fields, comma-separated: `input` adds `input_png`, the model's input after preprocessing "
    "(the 28x28 digit field or the 32x32 photo) as a base64 PNG"))]
_ERRORS = {
    400: ResponseSpec(ErrorBody, description="empty body, missing multipart field, bad parameter"),
    404: ResponseSpec(ErrorBody, description="unknown model; the detail names the available ids"),
    413: ResponseSpec(ErrorBody, description="body over the upload limit, or too many pixels"),
    415: ResponseSpec(ErrorBody, description="not an image, or an unsupported Content-Type"),
    422: ResponseSpec(ErrorBody, description="a truncated or damaged image"),
    503: ResponseSpec(ErrorBody, description="the model is loading or unavailable"),
}


@post("/predict/{model:str}", status_code=200, operation_class=openapi.SingleImageOperation,
       responses=_ERRORS, summary="Classify one image")
async def predict(request: Request, model: FromPath[str], top_k: TopK = 3, include: Include = None) -> Prediction:
    state = _state(request)
    return await predict_upload(state, model, top_k, include, lambda: _single_image(request, state.settings),
                                started=time.perf_counter())


async def predict_upload(state: ServiceState, model: str, top_k: int, include: str | None,
                         read_image: Callable[[], Awaitable[bytes]], *, started: float) -> Prediction:
    """`POST /predict/{model}` once its parameters are parsed, by Litestar or by the hot path.
    `read_image` reads the request's image, called once the model is known to serve; `started`:
    when the request reached the handler."""
    with state.metrics.tracked(model, state.catalog.entries, "predict"):
        include_input = includes_input(include)
        serving = state.catalog.serving(model)
        data = await read_image()
        return await predict_image(serving, data, top_k, decoding=state.decoding, budget=state.decoding.budget(),
                                   started=started, include_input=include_input)


@post("/predict/{model:str}/batch", status_code=200, operation_class=openapi.BatchOperation,
      responses=_ERRORS, summary="Classify several images")
async def predict_batch(request: Request, model: FromPath[str], top_k: TopK = 3, include: Include = None) -> BatchPrediction:
    """One multipart request, any number of file parts (repeat the field `files`). Each image
    gets its own answer in upload order; a bad image gets its own error entry in its place."""
    started = time.perf_counter()
    state = _state(request)
    with state.metrics.tracked(model, state.catalog.entries, "batch"):
        include_input = includes_input(include)
        serving = state.catalog.serving(model)
        images = await _multipart_images(request, state.settings)
        outcomes = await predict_images(serving, images, top_k, decoding=state.decoding, started=started,
                                        include_input=include_input)
        results = []
        for outcome in outcomes:
            if isinstance(outcome, ServiceError):
                state.metrics.errors.labels(serving.model.id, outcome.code).inc()
                outcome = outcome.body()
            results.append(BatchItem.of(outcome))
        return BatchPrediction(model=serving.model.id, results=results)


@get("/models", summary="Every model in the repository, with its status")
async def list_models(request: Request) -> ModelList:
    summaries = []
    for entry in _state(request).catalog.entries.values():
        card = entry.card
        kind = KINDS.get(card.preprocessing.kind) if card else None
        summaries.append(ModelSummary(
            id=entry.id, arch=card and card.arch, dataset=card and card.dataset,
            classes=card and card.classes, preprocessing=card and card.preprocessing,
            input_method=kind and kind.input_method, precision=card and card.precision,
            test_accuracy=card and card.test_accuracy, provider=entry.provider,
            status=entry.status, error=entry.error, max_batch=entry.max_batch))
    plan = _state(request).plan
    return ModelList(models=summaries, server=ServerPlan(workers=plan.workers, ort_threads=plan.ort_threads, max_batch=plan.max_batch,
                                                         chosen_by=plan.reason))


@get("/models/{model:str}", responses={404: _ERRORS[404]}, summary="One model's card, with its status")
async def model_card(request: Request, model: FromPath[str]) -> ModelCard | ModelState:
    entry = _state(request).catalog.get(model)
    if entry.card is None:
        return ModelState(id=entry.id, status=entry.status, error=entry.error, provider=entry.provider)
    return ModelCard(**msgspec.structs.asdict(entry.card), status=entry.status, error=entry.error,
                     provider=entry.provider)


# The probes answer any Host: a kubelet sends the pod's IP (service/guards.py).
@get("/health/live", summary="The process answers", opt={ANY_HOST: True})
async def live() -> Liveness:
    return Liveness(status="live")


@get("/health/ready", summary="Every model has been tried and at least one serves (else 503)",
     opt={ANY_HOST: True}, responses={503: ResponseSpec(Readiness, description="still loading, or no model can serve")})
async def ready(request: Request) -> Response[Readiness]:
    readiness = _state(request).catalog.readiness()
    return Response(readiness, status_code=200 if readiness.status == "ready" else 503)


@get("/metrics", media_type=Metrics.content_type, summary="Prometheus metrics")
async def metrics(request: Request) -> bytes:
    return _state(request).metrics.exposition()


ROUTES = [predict, predict_batch, list_models, model_card, live, ready, metrics]


def includes_input(include: str | None) -> bool:
    """Whether `?include=` asks for the model's input; an unknown value is a 400, not ignored."""
    asked = [value.strip() for value in (include or "").split(",") if value.strip()]
    unknown = [value for value in asked if value not in INCLUDABLE]
    if unknown:
        raise BadParameter(f"include={', '.join(map(repr, unknown))} is not known; "
                           f"known: {', '.join(INCLUDABLE)} (e.g. ?include=input)")
    return "input" in asked


async def _single_image(request: Request, settings: Settings) -> bytes:
    """The image bytes of a raw-body or multipart request."""
    body = require_body(await read_body(request, settings.body_read_timeout_s))
    content_type = request.content_type[0]
    if content_type == "multipart/form-data":
        upload = (await read_form(request, settings)).get("file")
        if not isinstance(upload, UploadFile):
            raise MissingFile(f"no file in the multipart field 'file'; {RAW_BODY_HINT}")
        return await upload.read()
    if is_raw_image_type(content_type):
        return body
    raise UnsupportedMediaType(f"Content-Type {content_type or '(none)'!r} is not accepted; {RAW_BODY_HINT}")


def is_raw_image_type(content_type: str) -> bool:
    """Whether a (lower-case) media type carries the image as the raw body."""
    return content_type.startswith("image/") or content_type == "application/octet-stream"


def require_body(body: bytes) -> bytes:
    if not body:
        raise EmptyBody(f"the request body is empty; {RAW_BODY_HINT}")
    return body


async def _multipart_images(request: Request, settings: Settings) -> AsyncIterator[bytes]:
    """The batch's file parts, checked, then read one at a time (see `_read_each`). The form is
    parsed as the body streams in: the body itself is never held whole beside its parts."""
    content_type = request.content_type[0]
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(f"Content-Type {content_type or '(none)'!r} is not accepted: send "
                                   "multipart/form-data with one file part per image "
                                   "(curl -F files=@a.png -F files=@b.png)")
    form = await read_form(request, settings)
    uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not uploads:
        raise MissingFile("no file parts in the request (curl -F files=@a.png -F files=@b.png)")
    limit = settings.max_batch_images
    if len(uploads) > limit:
        raise TooManyImages(f"{len(uploads)} images in one request; the limit is {limit} "
                            "(CNNZOO_MAX_BATCH_IMAGES)")
    return _read_each(uploads)


async def _read_each(uploads: list[UploadFile]) -> AsyncIterator[bytes]:
    """Each upload's bytes in turn, its spooled copy closed once read: a batch holds the parts
    not yet decoded and the one being decoded, never a second copy of them all."""
    for upload in uploads:
        try:
            yield await upload.read()
        finally:
            await upload.close()


