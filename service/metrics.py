"""Prometheus metrics, one registry per app (so tests can build several apps in one process).

Per model: requests by endpoint and status, errors by code, request latency, ONNX Runtime
call latency and batch sizes. Unknown model ids are counted as "_unknown", so a client
cannot grow the label set without limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager

from litestar.exceptions import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.errors import ServiceError

UNKNOWN_MODEL = "_unknown"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    # Without the charset parameter: Litestar appends it to every text/* response.
    content_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cnnzoo_requests", "Prediction requests answered, by model, endpoint "
                                "and HTTP status", ["model", "endpoint", "status"], registry=self.registry)
        self.errors = Counter("cnnzoo_errors", "Prediction errors (whole requests and single images "
                              "of a batch), by model and error code", ["model", "error"], registry=self.registry)
        self.latency = Histogram("cnnzoo_request_duration_seconds", "Prediction request latency, "
                                 "handler entry to answer", ["model", "endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("cnnzoo_inference_duration_seconds", "ONNX Runtime call latency, "
                                   "one call per batch", ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cnnzoo_batch_size", "Images per ONNX Runtime call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple] = {}
        self.model_ready = Gauge("cnnzoo_model_ready", "1 when the model serves, 0 when loading or "
                                 "unavailable", ["model", "provider"], registry=self.registry)

    def record_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, endpoint, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a key: do it once per series
            children = self._children[key] = (self.requests.labels(model, endpoint, str(status)),
                                              self.latency.labels(model, endpoint))
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def tracked(self, model: str, known: Container[str], endpoint: str,
                status_of: Callable[[ServiceError], int] = lambda err: err.status_code) -> Iterator[None]:
        """Count one request under `model` (UNKNOWN_MODEL unless it is `known`): its status,
        latency, and the error code of a refused one. `status_of`: the status a ServiceError
        answers with (the v2 protocol maps some differently; for gRPC too, its HTTP status)."""
        label = model if model in known else UNKNOWN_MODEL
        start, status = time.perf_counter(), 200
        try:
            yield
        except ServiceError as err:
            status = status_of(err)
            self.errors.labels(label, err.code).inc()
            raise
        except HTTPException as err:  # the framework's own refusals (a body over the upload limit)
            status = err.status_code
            self.errors.labels(label, str(status)).inc()
            raise
        except Exception:
            status = 500
            self.errors.labels(label, "internal_error").inc()
            raise
        finally:
            self.record_request(label, endpoint, status, time.perf_counter() - start)

    def batch_recorder(self, model: str):
        """A Batcher's on_batch callback for `model`."""
        sizes, seconds = self.batch_size.labels(model), self.inference.labels(model)

        def record(size: int, elapsed: float) -> None:
            sizes.observe(size)
            seconds.observe(elapsed)
        return record

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
