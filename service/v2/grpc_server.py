"""`inference.GRPCInferenceService` on CNNZOO_GRPC_PORT, in the app's own event loop.

It runs beside the HTTP server on the same catalog, batchers and metrics (the app's lifespan
starts it and stops it), and answers ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelConfig and ModelInfer; the service's other methods answer UNIMPLEMENTED.
Errors are status codes: INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE.

Stopping: uvicorn drains HTTP on SIGTERM first and only then ends the lifespan, so the gRPC
server also listens for that signal itself: it stops taking calls when HTTP does, and the calls
in flight get the same CNNZOO_GRACEFUL_TIMEOUT_S. Several worker processes share the port
through SO_REUSEPORT (the kernel spreads connections over them); a single process does not set
it, so that a port already in use is an error rather than a silent share.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

from service.errors import ServiceError
from service.v2 import grpc_codec, models
from service.v2.errors import grpc_code, http_status
from service.v2.inference import infer, serving
from service.v2.protos import schema

if TYPE_CHECKING:
    from service.routes import ServiceState

log = logging.getLogger("service.grpc")
ENDPOINT = "v2_grpc_infer"  # the metrics' endpoint label
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # the ones uvicorn handles


class GrpcBindError(RuntimeError):
    """The gRPC port cannot be listened on."""


class InferenceServicer:
    def __init__(self, state: ServiceState, version: str) -> None:
        self._state, self._version = state, version
        self._messages = schema().message

    async def ServerLive(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return self._messages("ServerLiveResponse")(live=True)

    async def ServerReady(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        ready = self._state.catalog.readiness().status == "ready"
        return self._messages("ServerReadyResponse")(ready=ready)

    async def ModelReady(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async def ready() -> Message:
            entry = self._state.catalog.get(request.name)
            return self._messages("ModelReadyResponse")(ready=entry.status == "ready")
        return await _answer(context, ready)

    async def ServerMetadata(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return self._messages("ServerMetadataResponse")(**models.server_metadata(self._version))

    async def ModelMetadata(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async def metadata() -> Message:
            found = serving(self._state, request.name, request.version)
            platform = models.model_config(self._state.catalog.get(request.name).folder).platform
            return self._messages("ModelMetadataResponse")(**models.model_metadata(found.model, platform))
        return await _answer(context, metadata)

    async def ModelConfig(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async def config() -> Message:
            serving(self._state, request.name, request.version)
            return self._messages("ModelConfigResponse")(
                config=models.model_config(self._state.catalog.get(request.name).folder))
        return await _answer(context, config)

    async def ModelInfer(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async def run() -> Message:
            with self._state.metrics.tracked(request.model_name, self._state.catalog.entries, ENDPOINT,
                                             status_of=http_status):
                done = await infer(self._state, request.model_name, request.model_version,
                                   grpc_codec.decode_request(request))
            return grpc_codec.encode_response(done.model_id, done.model_version, request.id, done.outputs)
        return await _answer(context, run)


async def _answer(context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[Message]]) -> Message:
    """The answer of `work`, or its ServiceError as the matching status code."""
    try:
        return await work()
    except ServiceError as err:
        await context.abort(grpc_code(err), err.detail)
    except Exception:
        log.exception("gRPC call failed")
        await context.abort(grpc.StatusCode.INTERNAL, "the server failed on this call; it has been logged")
    raise AssertionError("context.abort returns only by raising")


def _handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """Method handlers for what the servicer implements, typed by the service's own descriptor."""
    classes = schema().classes
    methods = {}
    for method in schema().service.methods:
        implementation = getattr(servicer, method.name, None)
        if implementation is not None:
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                implementation,
                request_deserializer=classes[method.input_type.full_name].FromString,
                response_serializer=classes[method.output_type.full_name].SerializeToString)
    return grpc.method_handlers_generic_handler(schema().service.full_name, methods)


class GrpcServer:
    """The running server: `stop` it once (the lifespan's end, or the exit signal, whichever comes first)."""

    def __init__(self, server: grpc.aio.Server, port: int, grace_s: float) -> None:
        self._server, self.port, self._grace_s = server, port, grace_s
        self._stopping: asyncio.Task | None = None

    async def stop(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._server.stop(self._grace_s))
        await asyncio.shield(self._stopping)

    def stop_on_exit_signals(self) -> None:
        """Begin stopping on SIGTERM/SIGINT as well, then hand the signal to uvicorn's handler."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (an app run by a test client, for one)
        loop = asyncio.get_running_loop()
        for sig in _EXIT_SIGNALS:
            previous = signal.getsignal(sig)

            def handle(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self._begin_stop)
                if callable(previous):
                    previous(signum, frame)
            signal.signal(sig, handle)

    def _begin_stop(self) -> None:
        if self._stopping is None:
            log.info("gRPC: no new calls; %d s for those in flight", self._grace_s)
            self._stopping = asyncio.ensure_future(self._server.stop(self._grace_s))


async def start(state: ServiceState, version: str) -> GrpcServer:
    settings = state.settings
    options = [
        ("grpc.so_reuseport", 1 if state.plan.workers > 1 else 0),
        ("grpc.max_receive_message_length", settings.max_upload_bytes),  # the HTTP body limit, here too
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((_handler(InferenceServicer(state, version)),))
    address = f"[{settings.host}]:{settings.grpc_port}" if ":" in settings.host else \
        f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise GrpcBindError(f"CNNZOO_GRPC_PORT: cannot listen on {address} ({err})") from None
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s", address)
    return GrpcServer(server, port, settings.graceful_timeout_s)
