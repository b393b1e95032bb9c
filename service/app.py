"""`create_app(settings)`: the Litestar app, built in one place.

At startup (the lifespan) the worker threads, the metrics and the catalog of models are made,
the models start loading in the background, and the Open Inference Protocol's gRPC server
starts (service/v2, on CNNZOO_GRPC_PORT unless it is 0; its HTTP routes are under /v2); at
shutdown, gRPC calls in flight and requests still queued for a batch are answered first, then
the threads stop. `/` serves the web page (service/page.py), `/schema` the API's description
(service/schema_docs.py). Every request passes the guard against DNS rebinding and cross-site
requests first (service/guards.py). A raw image POSTed to `/predict/<model>`, the hot path, is
answered before Litestar's router (service/raw_predict.py), by the same steps.

    uvicorn --factory service.app:create_app        # settings from CNNZOO_* variables
    python -m service                                # the same, with host/port/workers from them
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from importlib.metadata import PackageNotFoundError, version

from litestar.exceptions import HTTPException

from service import machine, pillow_warnings, strokes, tiny_png
from service.catalog import Catalog
from service.errors import ServiceError, http_error_handler, internal_error_handler, service_error_handler
from service.guards import AllowedHosts, RequestGuard
from service.logs import UntrustedTextFormatter
from service.metrics import Metrics
from service.page import PAGE_ROUTES
from service.predict import Decoding
from service.raw_predict import ServiceApp
from service.routes import ROUTES, ServiceState
from service.schema_docs import openapi_config
from service.settings import Settings
from service.uploads import multipart_part_limit
from service.v2 import grpc_server
from service.v2.http import ROUTES as V2_ROUTES
from service.v2.http import v2_aware
from service.v2.protos import schema

log = logging.getLogger("service")
SHUTDOWN_MESSAGE = "service stopped: requests in flight answered, batchers and worker threads stopped"


def use_c_modules(enabled: bool) -> str:
    """Which of the C modules setup.py builds this process uses, for the log; `enabled=False`
    (CNNZOO_C_MODULES=off) leaves them to numpy and Pillow for the rest of the process."""
    if not enabled:
        strokes.native = tiny_png.native = None
        return "off (CNNZOO_C_MODULES): numpy and Pillow instead"
    built = [name for name, module in (("_digitfield", strokes.native), ("_tinypng", tiny_png.native)) if module]
    return ", ".join(built) if len(built) == 2 else f"{', '.join(built) or 'none'} (not built: numpy and Pillow instead)"


def create_app(settings: Settings | None = None) -> ServiceApp:
    """The service for `settings` (default: read from the environment)."""
    settings = settings if settings is not None else Settings.from_env()
    guard = RequestGuard(AllowedHosts.of(settings))
    _configure_logging(settings.log_level)
    pillow_warnings.install()
    schema()  # Triton's protobuf schema: a broken installation stops here, not at the first gRPC call
    version = _version()

    @asynccontextmanager
    async def lifespan(app: ServiceApp) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="cnnzoo-worker")
        metrics = Metrics()
        plan = machine.plan(settings.workers, settings.ort_threads, max_batch=settings.max_batch)
        catalog = Catalog(settings, executor, metrics, ort_threads=plan.ort_threads, max_batch=plan.max_batch)
        app.state.service = ServiceState(settings=settings, catalog=catalog, metrics=metrics, executor=executor,
                                         plan=plan, decoding=Decoding.for_settings(settings, executor), guard=guard)
        log.info("serving %s: %d model(s) found, batching %s (window %.1f ms, max %s), %d worker threads, "
                 "%d ONNX Runtime thread(s) per model; one of %d server process(es) (%s); C modules: %s",
                 settings.model_repository, len(catalog.entries),
                 "on" if settings.batching else "off", settings.batch_window_ms,
                 plan.max_batch or "per model",
                 settings.worker_threads, plan.ort_threads, plan.workers, plan.reason,
                 use_c_modules(settings.c_modules))
        grpc = await grpc_server.start(app.state.service, version) if settings.grpc_port else None
        if grpc is not None:
            grpc.stop_on_exit_signals()
        loading = asyncio.create_task(catalog.load(), name="load-models")
        try:
            yield
        finally:
            if grpc is not None:
                await grpc.stop()  # before the batchers: calls in flight still need them
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            await catalog.close()
            executor.shutdown(wait=True, cancel_futures=True)
            log.info("%s", SHUTDOWN_MESSAGE)

    return ServiceApp(
        route_handlers=[*ROUTES, *V2_ROUTES, *PAGE_ROUTES],
        lifespan=[lifespan],
        middleware=[guard],
        request_max_body_size=settings.max_upload_bytes,
        multipart_form_part_limit=multipart_part_limit(settings),
        exception_handlers={  # under /v2 the protocol's own error shape
            ServiceError: v2_aware(service_error_handler),
            HTTPException: v2_aware(http_error_handler),
            Exception: v2_aware(internal_error_handler),
        },
        openapi_config=openapi_config(version),
    )


def _configure_logging(level: str) -> None:
    """Our log lines on stderr, whether uvicorn or a test builds the app."""
    logger = logging.getLogger("service")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(UntrustedTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _version() -> str:
    try:
        return version("cnnzoo")
    except PackageNotFoundError:
        return "0+unknown"
