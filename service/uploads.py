"""Reading a request's body and form under the service's limits, each breach a typed error.

Litestar enforces the size (CNNZOO_MAX_UPLOAD_BYTES: 413) while it reads; `read_raw_body`, which
reads the hot path's body straight from the ASGI server (service/raw_predict.py), does the same.
This module adds a deadline for the whole body (CNNZOO_BODY_READ_TIMEOUT_S: 408; neither Granian
nor uvicorn has one), and turns what Litestar's multipart parser raises for hostile forms into
clear errors: its part limits become 413 (Litestar 2 answers them with a 400 "Request Entity Too
Large"), and a text field that is not UTF-8 a 400 (Litestar lets the UnicodeDecodeError through:
a 500).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive
from multipart import ParserLimitReached

from service.errors import BodyTimeout, BodyTooLarge, ClientDisconnected, MultipartTooLarge, ServiceError
from service.settings import Settings

# The form parser's own limits per part (the `multipart` package's defaults, which Litestar keeps).
PART_HEADER_BYTES = 4096 + 128
PART_HEADER_LINES = 8
# Text fields a form may carry beside the images of a full batch.
SPARE_PARTS = 32
DISCONNECTED = "client disconnected prematurely"  # Litestar's detail, so both readers say the same


def multipart_part_limit(settings: Settings) -> int:
    """Most parts in one multipart body: a full batch of images and a few text fields."""
    return settings.max_batch_images + SPARE_PARTS


async def read_body(request: Request, timeout_s: float) -> bytes:
    """The whole body, within `timeout_s` of the first read (a client that trickles its bytes
    would otherwise hold the connection, and the body so far in memory, for as long as it likes)."""
    async with _body_deadline(timeout_s):
        return await request.body()


async def read_raw_body(receive: Receive, content_length: int | None, settings: Settings) -> bytes:
    """The whole body from the ASGI server's `receive`, under `read_body`'s limits: the upload
    limit (refused before reading when Content-Length announces more, else as the bytes come)
    and the deadline."""
    limit = settings.max_upload_bytes
    if content_length is not None and content_length > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    try:  # the deadline as in _body_deadline, without its generator (this is the hot path)
        async with asyncio.timeout(settings.body_read_timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected(f"the client disconnected before sending the whole body ({DISCONNECTED})")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise _timed_out(settings.body_read_timeout_s) from None


async def read_form(request: Request, settings: Settings) -> FormMultiDict:
    """The multipart form, parsed as the body streams in (a batch's body is never held whole
    beside its parts), under the body's deadline."""
    try:
        async with _body_deadline(settings.body_read_timeout_s):
            return await request.form()
    except ClientException as err:
        if isinstance(err.__context__, ParserLimitReached):
            raise _too_large(str(err.__context__), multipart_part_limit(settings)) from None
        raise
    except UnicodeDecodeError:
        raise ServiceError("a multipart text field is not UTF-8 text; send each image as a file part "
                           "(curl -F file=@digit.png, with the @)") from None


@asynccontextmanager
async def _body_deadline(timeout_s: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise _timed_out(timeout_s) from None
    except RequestEntityTooLarge:  # Litestar's, in the service's words: one error, whoever read the body
        raise BodyTooLarge from None
    except InternalServerException as err:  # Litestar's word for a client that hung up mid-body
        raise ClientDisconnected(f"the client disconnected before sending the whole body ({err.detail})") from None


def _timed_out(timeout_s: float) -> BodyTimeout:
    return BodyTimeout(f"the request body did not arrive within {timeout_s:g} s (CNNZOO_BODY_READ_TIMEOUT_S)")


def _too_large(reason: str, part_limit: int) -> MultipartTooLarge:
    """The parser's reason ("Maximum segment count exceeded", ...) in the service's words."""
    if "header count" in reason:
        return MultipartTooLarge(f"a multipart part has more than {PART_HEADER_LINES} header lines")
    if "header" in reason:
        return MultipartTooLarge(f"a multipart part header is longer than {PART_HEADER_BYTES} bytes "
                                 "(a very long field name or filename?)")
    return MultipartTooLarge(f"the multipart body has more than {part_limit} parts "
                             f"(CNNZOO_MAX_BATCH_IMAGES + {SPARE_PARTS})")
