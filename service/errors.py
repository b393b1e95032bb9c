"""Typed errors inside the service, and the one JSON shape they take at the edge.

Every error answer is `{"error": "<short_code>", "detail": "<human sentence>"}`. Client
mistakes are `ServiceError`s with their own status; the framework's own HTTP errors (404
route, 405 method, 413 body, 400 validation) are mapped to the same shape, and anything
unexpected becomes a 500 `internal_error` without taking the server down.
"""

from __future__ import annotations

import logging
import re

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

log = logging.getLogger("service")


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


class ServiceError(Exception):
    """A request the service refuses, with the HTTP status and short code it answers with."""

    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None  # extra response headers

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.code, detail=self.detail)


class UnknownModel(ServiceError):
    status_code, code = 404, "unknown_model"


class ModelUnavailable(ServiceError):
    status_code, code = 503, "model_unavailable"


class BadParameter(ServiceError):
    """A query parameter whose value the service does not know (`?include=everything`)."""

    status_code, code = 400, "bad_request"


class EmptyBody(ServiceError):
    status_code, code = 400, "empty_body"


class MissingFile(ServiceError):
    status_code, code = 400, "missing_file"


class ClientDisconnected(ServiceError):
    """The client hung up mid-upload; nobody reads the answer, but it is not a server error."""

    status_code, code = 400, "client_disconnected"


# Refused before the body was read: the rest of it may still be on its way, so the connection
# cannot carry another request, and a client that reused it would find it closed.
CLOSE = {"connection": "close"}


class BodyTimeout(ServiceError):
    """The body did not arrive within CNNZOO_BODY_READ_TIMEOUT_S (the connection is closed)."""

    status_code, code = 408, "request_timeout"
    headers = CLOSE


class BodyTooLarge(ServiceError):
    """The body is over CNNZOO_MAX_UPLOAD_BYTES (the connection is closed: the rest may follow)."""

    status_code, code = 413, "payload_too_large"
    headers = CLOSE

    def __init__(self) -> None:
        super().__init__("the request body is larger than the server accepts (CNNZOO_MAX_UPLOAD_BYTES)")


class MultipartTooLarge(ServiceError):
    """More multipart parts, or a longer part header, than the form parser accepts."""

    status_code, code = 413, "payload_too_large"


class UnknownHost(ServiceError):
    """A Host header the service does not answer to (CNNZOO_ALLOWED_HOSTS): DNS rebinding."""

    status_code, code = 400, "unknown_host"


class CrossSiteRequest(ServiceError):
    """A state-changing request sent by a browser from another site's page (CSRF)."""

    status_code, code = 403, "cross_site_request"


class UnsupportedMediaType(ServiceError):
    """The request's Content-Type is neither `image/*` nor `multipart/form-data`."""

    status_code, code = 415, "unsupported_media_type"


class UnsupportedImage(ServiceError):
    """The bytes are not an image format Pillow can read."""

    status_code, code = 415, "unsupported_image"


class CorruptImage(ServiceError):
    """A recognised format whose data is truncated or damaged."""

    status_code, code = 422, "corrupt_image"


class TooManyPixels(ServiceError):
    """Width x height over the limit, or a request's images over its budget: refused before
    decoding (decompression bombs)."""

    status_code, code = 413, "too_many_pixels"


class ImageTooComplex(ServiceError):
    """A file whose structure (chunks, segments, scans, tags) would cost too much to decode:
    refused before decoding, as too many pixels are."""

    status_code, code = 413, "image_too_complex"


class TooManyImages(ServiceError):
    status_code, code = 413, "too_many_images"


def service_error_handler(_: Request, exc: ServiceError) -> Response[ErrorBody]:
    return Response(exc.body(), status_code=exc.status_code, headers=exc.headers)


# Short codes for the framework's own errors, by status.
_HTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "unprocessable",
}


def http_error_handler(request: Request, exc: HTTPException) -> Response[ErrorBody]:
    """The framework's errors (routing, validation, body size) in the service's JSON shape."""
    status = exc.status_code
    code = _HTTP_CODES.get(status, re.sub(r"\W+", "_", str(exc.detail).lower()).strip("_"))
    headers = dict(getattr(exc, "headers", None) or {})
    detail = str(exc.detail)
    if status == 404 and detail == "Not Found":  # the router's; a handler's own detail says more
        detail = f"no route {request.method} {request.url.path}; the API is described at /schema"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {headers.get('allow', 'see /schema')}"
    elif status == 413:
        too_large = BodyTooLarge()
        detail = too_large.detail
        headers.update(too_large.headers)
    elif status == 400 and isinstance(getattr(exc, "extra", None), list):  # parameter validation
        problems = [f"{item.get('key')}: {item.get('message')}" for item in exc.extra if isinstance(item, dict)]
        detail = "invalid parameter: " + "; ".join(problems) if problems else detail
    return Response(ErrorBody(error=code, detail=detail), status_code=status, headers=headers or None)


def internal_error_handler(request: Request, exc: Exception) -> Response[ErrorBody]:
    return Response(internal_error(request.method, request.url.path, exc), status_code=500)


def internal_error(method: str, path: str, exc: Exception) -> ErrorBody:
    """Logs an unexpected failure; the 500 answer's body."""
    log.exception("unhandled error on %s %r", method, path, exc_info=exc)
    return ErrorBody(error="internal_error", detail="the server failed on this request; it has been logged")
