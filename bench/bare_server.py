"""The framework's ceiling: a Litestar app whose one route answers a constant, for comparison.

    granian --interface asgi --factory bench.bare_server:create_app   (bench/service_benchmark.py runs it)
"""

from __future__ import annotations

from litestar import Litestar, get


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar([live])
