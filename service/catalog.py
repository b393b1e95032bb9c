"""The models this server knows, as the event loop sees them: lookups, loading, readiness.

Loading runs in the background after startup, one model at a time in a worker thread, so the
server answers /health/live (and every model already loaded) while the rest load. The
catalog owns each model's status and batcher; `repository.load_model` only says what loaded.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from modelrepo.card import Card
from modelrepo.layout import model_folders
from service import machine, repository
from service.batching import Batcher
from service.errors import ModelUnavailable, UnknownModel
from service.metrics import Metrics
from service.repository import LoadedModel, ModelLoadError
from service.schemas import ModelStatus, Readiness
from service.settings import Settings

log = logging.getLogger("service.catalog")


@dataclass
class ModelEntry:
    """One folder of the repository: what loaded (if anything), and whether it serves."""

    id: str
    folder: Path
    status: ModelStatus = "loading"
    error: str | None = None
    card: Card | None = None  # as soon as it has been read, even if loading failed later
    model: LoadedModel | None = None
    batcher: Batcher | None = None
    max_batch: int | None = None  # once it serves: the most inputs in one of its ONNX Runtime calls

    @property
    def provider(self) -> str | None:
        return self.model.provider if self.model else None


@dataclass(frozen=True)
class Serving:
    """A model that can answer now, with the batcher that runs it."""

    model: LoadedModel
    batcher: Batcher


class Catalog:
    def __init__(self, settings: Settings, executor: Executor, metrics: Metrics, *, ort_threads: int,
                 max_batch: int | None) -> None:
        self.settings = settings
        # As machine.plan chose them; max_batch None: each model's own (machine.cpu_batch).
        self.ort_threads, self.max_batch = ort_threads, max_batch
        self._executor = executor
        self._metrics = metrics
        self.entries: dict[str, ModelEntry] = {
            folder.name: ModelEntry(folder.name, folder) for folder in model_folders(settings.model_repository)}
        if not settings.model_repository.is_dir():
            log.warning("model repository %s does not exist: no models to serve", settings.model_repository)
        self.loaded = asyncio.Event()  # every model has been tried

    async def load(self) -> None:
        """Load every model; each one serves as soon as it is warm."""
        loop = asyncio.get_running_loop()
        providers = machine.usable_providers(self.settings.providers)
        await loop.run_in_executor(self._executor, repository.preload_cuda, providers)
        sizes = (1, self.max_batch) if self.settings.batching and self.max_batch else (1,)
        for entry in self.entries.values():
            try:
                model = await loop.run_in_executor(
                    self._executor, lambda: repository.load_model(
                        entry.folder, providers, ort_threads=self.ort_threads, warm_up_sizes=sizes))
                batch = await loop.run_in_executor(self._executor, self._max_batch, model)
            except Exception as err:  # noqa: BLE001 - one broken model must not stop the others
                self._unavailable(entry, err)
            else:
                self._serve(entry, model, batch)
                providers = repository.after_fallback(providers, model)
            self._publish_status(entry)
        await loop.run_in_executor(self._executor, repository.release_freed_heap)
        self.loaded.set()
        ready = [e.id for e in self.entries.values() if e.status == "ready"]
        log.info("%d of %d models ready: %s", len(ready), len(self.entries), ", ".join(ready) or "none")

    def _max_batch(self, model: LoadedModel) -> int:
        """The model's largest batch, warmed up (blocking: in a worker thread)."""
        if not self.settings.batching:
            return 1
        if self.max_batch is not None:
            return self.max_batch  # warmed up by load_model
        batch = machine.cpu_batch(repository.image_seconds(model))
        repository.warm_up(model, (batch,))
        return batch

    def _serve(self, entry: ModelEntry, model: LoadedModel, max_batch: int) -> None:
        entry.card, entry.model, entry.max_batch = model.card, model, max_batch
        entry.batcher = Batcher(
            model.score, self._executor, max_batch=max_batch,
            window_s=self.settings.batch_window_ms / 1000, enabled=self.settings.batching,
            max_in_flight=self.settings.worker_threads, on_batch=self._metrics.batch_recorder(model.id))
        entry.batcher.start()
        entry.status = "ready"
        log.info("model %s ready on %s, batches of up to %d", model.id, model.provider, max_batch)

    def _unavailable(self, entry: ModelEntry, err: Exception) -> None:
        if isinstance(err, ModelLoadError):
            entry.card, reason = err.card, str(err)
        else:  # a bug, not a bad model folder: the log gets the details, the client the gist
            log.exception("loading %s failed unexpectedly", entry.id, exc_info=err)
            reason = f"{entry.id}: loading failed ({type(err).__name__}; the server log has details)"
        entry.status, entry.error = "unavailable", reason
        log.error("model %s unavailable: %s", entry.id, reason)

    async def close(self) -> None:
        for entry in self.entries.values():
            if entry.batcher is not None:
                await entry.batcher.stop()

    def get(self, model_id: str) -> ModelEntry:
        """The model, if known (404 otherwise, naming the known ids)."""
        entry = self.entries.get(model_id)
        if entry is None:
            known = ", ".join(self.entries) or "none: the model repository is empty"
            raise UnknownModel(f"no model {model_id!r}; available: {known}")
        return entry

    def serving(self, model_id: str) -> Serving:
        """The model, if it can answer now (503 while loading or when unavailable)."""
        entry = self.get(model_id)
        if entry.status == "loading":
            raise ModelUnavailable(f"model {model_id!r} is still loading; retry in a moment")
        if entry.status != "ready" or entry.model is None or entry.batcher is None:
            raise ModelUnavailable(f"model {model_id!r} is unavailable: {entry.error}")
        return Serving(entry.model, entry.batcher)

    def readiness(self) -> Readiness:
        by_status = {status: [e.id for e in self.entries.values() if e.status == status]
                     for status in ("ready", "loading", "unavailable")}
        if not self.loaded.is_set():
            status = "loading"
        else:
            status = "ready" if by_status["ready"] else "unavailable"
        return Readiness(status=status, ready=by_status["ready"], loading=by_status["loading"],
                         unavailable={e.id: e.error or "" for e in self.entries.values()
                                      if e.status == "unavailable"})

    def _publish_status(self, entry: ModelEntry) -> None:
        self._metrics.model_ready.labels(entry.id, entry.provider or "none").set(
            1 if entry.status == "ready" else 0)
