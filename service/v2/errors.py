"""The protocol's view of the service's typed errors.

Inside, v2 code raises `ServiceError`s like the rest of the service (`InvalidTensor` for a
tensor that does not fit the model). The edges answer in the protocol's own terms: over HTTP
`{"error": "<message>"}` (the Open Inference Protocol's shape, not /predict's `{"error",
"detail"}`), over gRPC the matching status code. The protocol knows fewer statuses than
/predict, so an image that is no image (415) or a damaged one (422) is a plain 400 here.
"""

from __future__ import annotations

import grpc

from service.errors import ServiceError


class InvalidTensor(ServiceError):
    """A tensor, parameter or body that does not fit the protocol or the model."""

    status_code, code = 400, "invalid_tensor"


class UnknownVersion(ServiceError):
    status_code, code = 404, "unknown_version"


_FOLDED = {415: 400, 422: 400}
_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def http_status(err: ServiceError) -> int:
    """The status a v2 client gets for `err` (400, 404, 413 or 503)."""
    return _FOLDED.get(err.status_code, err.status_code)


def grpc_code(err: ServiceError) -> grpc.StatusCode:
    return _GRPC_CODES.get(http_status(err), grpc.StatusCode.INTERNAL)
