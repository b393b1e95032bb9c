"""The Open Inference Protocol over HTTP: the routes under /v2, and their error shape.

Every answer under /v2, an error included, is the protocol's: errors are `{"error": "<message>"}`
with 400, 404, 413 or 503 (405 for a wrong method), as `application/json`. `v2_aware` puts the
app's exception handlers in front of that, so even a path under /v2 that matches no route, or a
body over CNNZOO_MAX_UPLOAD_BYTES, answers in the protocol's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from litestar import Request, Response, get, post
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from service.errors import CLOSE, BodyTooLarge, ServiceError
from service.guards import ANY_HOST
from service.routes import ServiceState
from service.uploads import read_body
from service.v2 import models, rest
from service.v2.errors import http_status
from service.v2.inference import infer as run_inference
from service.v2.inference import check_version, serving

log = logging.getLogger("service.v2")
PREFIX = "/v2"
ENDPOINT = "v2_infer"  # the metrics' endpoint label
MODEL = "/v2/models/{model:str}"
VERSIONED = "/v2/models/{model:str}/versions/{version:str}"
BINARY = "application/octet-stream"


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def _version(request: Request) -> str | None:
    """The path's version, None on the unversioned path. Read here rather than as a handler
    parameter: each handler serves both paths, and Litestar would infer `version` as a query
    parameter on the one without it."""
    return request.path_params.get("version")


def _json(body: object, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=MediaType.JSON)


@get(PREFIX, summary="v2: server metadata (name, version, extensions)", tags=["v2"])
async def server_metadata(request: Request) -> Response:
    return _json(models.server_metadata(request.app.openapi_config.version))  # the app's version


@get(f"{PREFIX}/health/live", summary="v2: the server answers", tags=["v2"], opt={ANY_HOST: True})
async def live() -> Response:
    return _json({"live": True})


@get(f"{PREFIX}/health/ready", summary="v2: every model tried and one serves (else 503)", tags=["v2"],
     opt={ANY_HOST: True})
async def ready(request: Request) -> Response:
    is_ready = _state(request).catalog.readiness().status == "ready"
    return _json({"ready": is_ready}, 200 if is_ready else 503)


@get([MODEL, VERSIONED], summary="v2: model metadata", tags=["v2"])
async def model_metadata(request: Request, model: FromPath[str]) -> Response:
    state = _state(request)
    found = serving(state, model, _version(request))
    platform = models.model_config(state.catalog.get(model).folder).platform
    return _json(models.model_metadata(found.model, platform))


@get([f"{MODEL}/ready", f"{VERSIONED}/ready"], summary="v2: the model serves (else 503)", tags=["v2"])
async def model_ready(request: Request, model: FromPath[str]) -> Response:
    entry = _state(request).catalog.get(model)
    check_version(entry.id, _version(request))
    is_ready = entry.status == "ready"
    return _json({"name": entry.id, "ready": is_ready}, 200 if is_ready else 503)


@get([f"{MODEL}/config", f"{VERSIONED}/config"], summary="v2: the model's config.pbtxt as JSON", tags=["v2"])
async def model_config(request: Request, model: FromPath[str]) -> Response:
    state = _state(request)
    serving(state, model, _version(request))
    return _json(models.config_json(models.model_config(state.catalog.get(model).folder)))


@post([f"{MODEL}/infer", f"{VERSIONED}/infer"], status_code=200, summary="v2: inference", tags=["v2"])
async def infer(request: Request, model: FromPath[str]) -> Response:
    state = _state(request)
    with state.metrics.tracked(model, state.catalog.entries, ENDPOINT, status_of=http_status):
        body = await read_body(request, state.settings.body_read_timeout_s)
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise ServiceError(f"Content-Encoding {request.headers['content-encoding']!r} is not supported: "
                               "send the body uncompressed")
        wanted = rest.decode_request(body, request.headers.get(rest.HEADER_LENGTH))
        done = await run_inference(state, model, _version(request), wanted)
    content, header_length = rest.encode_response(done.model_id, done.model_version, wanted, done.outputs)
    if header_length is None:
        return Response(content, media_type=MediaType.JSON)
    return Response(content, media_type=BINARY, headers={rest.HEADER_LENGTH: str(header_length)})


ROUTES = [server_metadata, live, ready, model_metadata, model_ready, model_config, infer]


def is_v2(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def v2_aware(handler: Callable[[Request, Exception], Response]) -> Callable[[Request, Exception], Response]:
    """`handler` for the service's own routes; the protocol's `{"error"}` under /v2."""
    def dispatch(request: Request, exc: Exception) -> Response:
        return error_response(request, exc) if is_v2(request) else handler(request, exc)
    return dispatch


def error_response(request: Request, exc: Exception) -> Response:
    headers = None
    if isinstance(exc, ServiceError):
        status, message, headers = http_status(exc), exc.detail, exc.headers
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, _framework_message(request, exc)
        if "allow" in (exc.headers or {}):
            headers = {"allow": exc.headers["allow"]}
        elif status == 413:
            headers = CLOSE
    else:
        log.exception("unhandled error on %s %r", request.method, request.url.path, exc_info=exc)
        status, message = 500, "the server failed on this request; it has been logged"
    return Response({"error": message}, status_code=status, media_type=MediaType.JSON, headers=headers)


def _framework_message(request: Request, exc: HTTPException) -> str:
    if exc.status_code == 404:
        return f"no route {request.method} {request.url.path}; the v2 routes are in the README and at /schema"
    if exc.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    if exc.status_code == 413:
        return BodyTooLarge().detail
    return str(exc.detail)
