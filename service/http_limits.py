"""The HTTP limits of the settings, in each ASGI server's own terms.

| setting | Granian | uvicorn |
| --- | --- | --- |
| CNNZOO_MAX_HEADER_BYTES | `HTTP1Settings.max_buffer_size`: 431 and close | `H11WithHeadLimits` below: 431 and close |
| CNNZOO_HEADER_READ_TIMEOUT_S | `HTTP1Settings.header_read_timeout`: closed, also when idle between requests | none of its own: `H11WithHeadLimits`, the same |
| CNNZOO_MAX_CONNECTIONS | `backpressure`: more wait in the listen backlog | `limit_concurrency`: more get 503 |
| CNNZOO_KEEP_ALIVE_S | (the header timeout closes idle connections) | `timeout_keep_alive` |

Neither server has a deadline for the body: the app has one (service/uploads.py). Granian
checks the size after each read of its buffer, which grows in steps, so a head that arrives in
large reads may reach up to twice the setting first (docs/results.md); it also caps a
request at 100 headers (431). uvicorn runs its h11 protocol, not httptools, which limits neither
the size nor the number of headers.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.errors import ErrorBody
from service.settings import Settings


def granian_options(settings: Settings) -> dict[str, Any]:
    from granian.http import HTTP1Settings

    return {
        "backpressure": settings.max_connections,
        "http1_settings": HTTP1Settings(keep_alive=True, max_buffer_size=settings.max_header_bytes,
                                        header_read_timeout=round(settings.header_read_timeout_s * 1000)),
    }


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "http": f"{__name__}:H11WithHeadLimits",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
    }


@functools.cache
def _settings() -> Settings:
    # uvicorn spawns its worker processes and hands them only its own config: the settings come
    # from the environment, as they did for `python -m service`.
    return Settings.from_env()


class H11WithHeadLimits(H11Protocol):
    """uvicorn's h11 protocol with what uvicorn lacks: a deadline for each request's headers (a
    connection that sends nothing, or half a request line, is otherwise held until the client
    leaves), and a size limit that holds even for headers arriving whole in one read (h11's own
    applies only while they are incomplete)."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            pending = self.conn.trailing_data[0] + data  # at most the limit was kept from before
            end = pending.find(b"\r\n\r\n")
            if (len(pending) if end < 0 else end + 4) > _settings().max_header_bytes:
                self._refuse_headers()
                return
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request's headers on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        """No request head parsed yet: what arrives now is the next request's headers (not the
        rest of a body whose answer went out early, such as a 413's)."""
        return self.conn.their_state is h11.IDLE

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(_settings().header_read_timeout_s, self._header_deadline_passed)

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self._between_requests():  # else its headers came in time; its body has the app's deadline
            self.transport.close()

    def _refuse_headers(self) -> None:
        """431, as Granian answers, and close: the rest of the headers may still be coming."""
        body = msgspec.json.encode(ErrorBody(
            error="headers_too_large",
            detail=f"the request's headers are over {_settings().max_header_bytes} bytes (CNNZOO_MAX_HEADER_BYTES)"))
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()
