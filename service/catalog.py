"""The models this server knows, as the event loop sees them: lookups, loading, readiness.

Loading runs in the background after startup, one model at a time in a worker thread, so the
server answers /health/live (and every model already loaded) while the rest load.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from service import repository
from service.batching import Batcher
from service.errors import ModelUnavailable, UnknownModel
from service.metrics import Metrics
from service.repository import ServedModel
from service.schemas import Readiness
from service.settings import Settings

log = logging.getLogger("service.catalog")


class Catalog:
    def __init__(self, settings: Settings, executor: Executor, metrics: Metrics) -> None:
        self.settings = settings
        self._executor = executor
        self._metrics = metrics
        self.models: dict[str, ServedModel] = {
            model.id: model for model in repository.discover(settings.model_repository)}
        self.loaded = asyncio.Event()  # every model has been tried

    async def load(self) -> None:
        """Load every model; each one serves as soon as it is warm."""
        loop = asyncio.get_running_loop()
        providers = self.settings.providers
        await loop.run_in_executor(self._executor, repository.preload_cuda, providers)
        for model in self.models.values():
            await loop.run_in_executor(self._executor, repository.load, model, self.settings, providers)
            if model.session is not None:
                model.batcher = Batcher(
                    model.classify, self._executor, max_batch=self.settings.max_batch,
                    window_s=self.settings.batch_window_ms / 1000, enabled=self.settings.batching,
                    max_in_flight=self.settings.worker_threads,
                    on_batch=self._metrics.batch_recorder(model.id))
                model.batcher.start()
                model.status = "ready"
                log.info("model %s ready on %s", model.id, model.provider)
            self._publish_status(model)
            providers = repository.after_fallback(providers, model)
        self.loaded.set()
        ready = [m.id for m in self.models.values() if m.status == "ready"]
        log.info("%d of %d models ready: %s", len(ready), len(self.models), ", ".join(ready) or "none")

    async def close(self) -> None:
        for model in self.models.values():
            if model.batcher is not None:
                await model.batcher.stop()

    def get(self, model_id: str) -> ServedModel:
        """The model, if known (404 otherwise, naming the known ids)."""
        model = self.models.get(model_id)
        if model is None:
            known = ", ".join(self.models) or "none: the model repository is empty"
            raise UnknownModel(f"no model {model_id!r}; available: {known}")
        return model

    def serving(self, model_id: str) -> ServedModel:
        """The model, if it can answer now (503 while loading or when unavailable)."""
        model = self.get(model_id)
        if model.status == "loading":
            raise ModelUnavailable(f"model {model_id!r} is still loading; retry in a moment")
        if model.status != "ready" or model.batcher is None:
            raise ModelUnavailable(f"model {model_id!r} is unavailable: {model.error}")
        return model

    def readiness(self) -> Readiness:
        by_status = {status: [m.id for m in self.models.values() if m.status == status]
                     for status in ("ready", "loading", "unavailable")}
        if not self.loaded.is_set():
            status = "loading"
        else:
            status = "ready" if by_status["ready"] else "unavailable"
        return Readiness(status=status, ready=by_status["ready"], loading=by_status["loading"],
                         unavailable={m.id: m.error or "" for m in self.models.values()
                                      if m.status == "unavailable"})

    def _publish_status(self, model: ServedModel) -> None:
        self._metrics.model_ready.labels(model.id, model.provider or "none").set(
            1 if model.status == "ready" else 0)
