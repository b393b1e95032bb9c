"""`python -m service`: serve the model repository, configured from CNNZOO_* variables.

The ASGI server is Granian (CNNZOO_SERVER=granian, the default: faster here, see
docs/results.md) or uvicorn. Either way, on SIGTERM (or Ctrl-C) the server stops accepting
connections, lets in-flight requests finish (up to CNNZOO_GRACEFUL_TIMEOUT_S), then the app
stops its batchers and worker threads. Each worker process builds its own app.
"""

from __future__ import annotations

import logging
import sys

from service import machine
from service.http_limits import granian_options, uvicorn_options
from service.logs import granian_log_config
from service.settings import Settings, SettingsError

APP = "service.app:create_app"
log = logging.getLogger("service")


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"python -m service: {err}", file=sys.stderr)
        return 2
    plan = machine.plan(settings.workers, settings.ort_threads, max_batch=settings.max_batch)
    print(f"python -m service: {settings.server} with {plan.workers} worker process"
          f"{'es' if plan.workers != 1 else ''} ({plan.reason}), {plan.ort_threads} ONNX Runtime "
          f"thread{'s' if plan.ort_threads != 1 else ''} per model, batches of at most {plan.max_batch or 'a per-model size'}",
          file=sys.stderr, flush=True)
    if settings.server == "granian":
        serve_granian(settings, plan.workers)
    else:
        serve_uvicorn(settings, plan.workers)
    return 0


def serve_granian(settings: Settings, workers: int) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    Granian(
        APP, factory=True, interface=Interfaces.ASGI, address=settings.host, port=settings.port,
        workers=workers, http=HTTPModes.http1,
        # uvloop, named: with "auto" Granian 2.8 dropped requests in flight on SIGTERM here.
        loop=Loops.uvloop,
        **granian_options(settings),
        workers_kill_timeout=settings.graceful_timeout_s,
        log_level=settings.log_level, log_access=settings.access_log, log_dictconfig=granian_log_config(),
    ).serve()


def serve_uvicorn(settings: Settings, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        APP, factory=True, host=settings.host, port=settings.port, workers=workers,
        timeout_graceful_shutdown=settings.graceful_timeout_s, **uvicorn_options(settings),
        log_level=settings.log_level, access_log=settings.access_log,
    )


if __name__ == "__main__":
    sys.exit(main())
