"""The hot path: `POST /predict/<model>` with the image as the raw body, answered before Litestar.

Litestar's routing, parameter parsing, middleware and response objects cost about a fifth of
the CPU a small digit's prediction takes (docs/results.md, "the raw-body route"), and this is
the request a client sends in a loop. So `ServiceApp` hands it here first, and only the common
case is taken, judged from the request line and headers alone: the path `/predict/<model>`, an
image Content-Type (or application/octet-stream), a valid Content-Length if any, and a query of
at most a plain `top_k` and a non-empty `include`. Everything else (multipart, a malformed
parameter, a trailing slash, a body the route would refuse for its type) goes on to Litestar,
which declares the same route and gives the canonical answer; nothing has been read by then.

Nothing about the route lives here: the guard's checks (`RequestGuard.check`), the body's limits
(`uploads.read_raw_body`), the route's steps (`routes.predict_upload`) and the errors' JSON are
the ones Litestar's handler uses.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from service.errors import ServiceError, internal_error
from service.routes import is_raw_image_type, predict_upload, require_body
from service.uploads import read_raw_body

if TYPE_CHECKING:
    from service.routes import ServiceState

log = logging.getLogger("service")

PREDICT_PATH = re.compile(r"/predict/([^/]+)")
TOP_K = re.compile(r"[0-9]{1,6}")
DEFAULT_TOP_K = 3  # routes.predict's default
# The headers the route reads: the guard's, and the body's type and length.
READ_HEADERS = frozenset({"host", "origin", "sec-fetch-site", "content-type", "content-length"})
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class RawPredict:
    """A request this module answers, parsed from its ASGI scope."""

    model: str
    top_k: int
    include: str | None
    headers: dict[str, str]  # READ_HEADERS present, lower-case names, the first value of each
    content_length: int | None


def taken(scope: Scope) -> RawPredict | None:
    """The request, if it is the common case described in the module; else None (Litestar's)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path = PREDICT_PATH.fullmatch(scope["path"])
    if path is None:
        return None
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key in READ_HEADERS and key not in headers:
            headers[key] = value.decode("latin-1")
    if not is_raw_image_type(headers.get("content-type", "").partition(";")[0].strip().lower()):
        return None
    content_length = None
    if "content-length" in headers:
        try:
            content_length = int(headers["content-length"])
        except ValueError:
            return None
    query = _query(scope.get("query_string", b""))
    if query is None:
        return None
    return RawPredict(path[1], query.get("top_k", DEFAULT_TOP_K), query.get("include"), headers, content_length)


def _query(raw: bytes) -> dict[str, Any] | None:
    """`top_k=<digits>` (>= 1) and `include=<text>`, each at most once, nothing escaped; else None."""
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return None
    query: dict[str, Any] = {}
    for pair in text.split("&"):
        key, equals, value = pair.partition("=")
        if not equals or key in query or not value:
            return None
        if key == "top_k":
            if TOP_K.fullmatch(value) is None or int(value) < 1:
                return None
            query[key] = int(value)
        elif key == "include":
            query[key] = value
        else:
            return None
    return query


async def answer(state: ServiceState, request: RawPredict, receive: Receive, send: Send) -> None:
    """The route's answer, sent as Litestar's handler would send it."""
    started = time.perf_counter()
    status, extra = 200, None
    try:
        state.guard.check(request.headers, "POST")
        prediction = await predict_upload(
            state, request.model, request.top_k, request.include,
            lambda: _read_image(receive, request, state), started=started)
        body = _encode(prediction)
    except ServiceError as err:
        status, extra, body = err.status_code, err.headers, _encode(err.body())
    except Exception as err:  # noqa: BLE001 - a 500 for this request, not a dead connection
        status, body = 500, _encode(internal_error("POST", f"/predict/{request.model}", err))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_image(receive: Receive, request: RawPredict, state: ServiceState) -> bytes:
    return require_body(await read_raw_body(receive, request.content_length, state.settings))


class ServiceApp(Litestar):
    """Litestar, with the hot path (this module) answered before its router once the app has
    started; every other request, and every request before startup, is Litestar's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http":
            state = getattr(self.state, "service", None)
            request = taken(scope) if state is not None and state.settings.hot_path else None
            if request is not None:
                await answer(state, request, receive, send)
                return
        await super().__call__(scope, receive, send)
