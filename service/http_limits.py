"""The HTTP limits of the settings, in each ASGI server's own terms.

| setting | Granian | uvicorn |
| --- | --- | --- |
| CNNZOO_MAX_HEADER_BYTES | `HTTP1Settings.max_buffer_size`: 431 and close | `h11_max_incomplete_event_size`: 400 and close |
| CNNZOO_HEADER_READ_TIMEOUT_S | `HTTP1Settings.header_read_timeout`: closed, also when idle between requests | none of its own: `H11WithHeaderTimeout` below |
| CNNZOO_MAX_CONNECTIONS | `backpressure`: more wait in the listen backlog | `limit_concurrency`: more get 503 |
| CNNZOO_KEEP_ALIVE_S | (the header timeout closes idle connections) | `timeout_keep_alive` |

Neither server has a deadline for the body: the app has one (service/uploads.py). Granian also
caps a request at 100 headers (431); uvicorn runs h11, since httptools caps neither their size
nor their number.
"""

from __future__ import annotations

import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

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
        "http": f"{__name__}:H11WithHeaderTimeout",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
    }


@functools.cache
def _header_timeout_s() -> float:
    # uvicorn spawns its worker processes and hands them only its own config: the setting comes
    # from the environment, as it did for `python -m service`.
    return Settings.from_env().header_read_timeout_s


class H11WithHeaderTimeout(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers. uvicorn has none: a
    connection that sends nothing, or half a request line, is held until the client leaves."""

    _header_deadline = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request's headers on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(_header_timeout_s(), self._header_deadline_passed)

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request whose headers came in time; its body has the app's deadline
        self.transport.close()
