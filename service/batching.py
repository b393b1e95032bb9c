"""Dynamic batching: concurrent requests for one model share one ONNX Runtime call.

A request that finds the model idle runs at once: waiting would only add latency. While a
batch is running, the next one gathers: its first request waits at most `window_s` for
company (less when it already waited for a free worker), and the batch closes early when
`max_batch` inputs are waiting. The
call runs in a worker thread (ONNX Runtime releases the GIL), so the event loop keeps
accepting requests, and at most `max_in_flight` batches of a model run at once. Each row of
the output goes back to the request that sent it. ONNX Runtime computes every row of a
batch independently, so a batched answer equals the unbatched one (the tests check it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# N×C×H×W float32 -> N rows of output, `outputs[row]` being one input's (an N×K array, or
# LoadedModel.score's Scores: logits and probabilities)
Infer = Callable[[np.ndarray], Any]


class BatcherStopped(RuntimeError):
    """The model is shutting down; the request was not run."""


@dataclass(frozen=True)
class BatchTiming:
    queue_s: float  # from submit until the batch started running
    inference_s: float  # the ONNX Runtime call, thread hand-over included
    batch_size: int


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)


class Batcher:
    """Gathers inputs for one model into batched `infer` calls on `executor`."""

    def __init__(self, infer: Infer, executor: Executor, *, max_batch: int, window_s: float,
                 enabled: bool = True, max_in_flight: int = 1,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self._infer = infer
        self._executor = executor
        self.max_batch = max_batch if enabled else 1
        self.window_s = window_s
        self.enabled = enabled
        self._on_batch = on_batch  # (batch size, seconds): for the metrics
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._collector: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._stopped = False

    def start(self) -> None:
        if self.enabled and self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name="batcher")

    async def submit(self, x: np.ndarray) -> tuple[np.ndarray, BatchTiming]:
        """Run one C×H×W input; returns its row of the output and how long it queued and ran."""
        if self._stopped:
            raise BatcherStopped("the model is shutting down")
        item = _Pending(x, asyncio.get_running_loop().create_future())
        if not self.enabled:  # one call per request, at most max_in_flight at once
            await self._slots.acquire()
            await self._run([item])
            return await item.future
        self._pending.append(item)
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await item.future

    async def stop(self) -> None:
        """Stop gathering; requests still waiting are refused, batches running finish."""
        self._stopped = True
        if self._collector is not None:
            self._collector.cancel()
            with suppress(asyncio.CancelledError):
                await self._collector
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(BatcherStopped("the model is shutting down"))
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()  # wait for a free worker first: meanwhile inputs pile up
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Pending]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        wait = self._pending[0].submitted + self.window_s - time.perf_counter()
        if self._running and len(self._pending) < self.max_batch and wait > 0:
            self._full.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), wait)
        size = min(self.max_batch, len(self._pending))
        return [self._pending.popleft() for _ in range(size)]

    async def _run(self, batch: list[_Pending]) -> None:
        """Run one batch in the executor and answer each of its requests. Releases a slot."""
        try:
            started = time.perf_counter()
            try:
                inputs = np.stack([item.x for item in batch])
                outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, inputs)
            except Exception as err:  # noqa: BLE001 - every waiting request must hear of it
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                return
            elapsed = time.perf_counter() - started
            if self._on_batch is not None:
                self._on_batch(len(batch), elapsed)
            for row, item in enumerate(batch):
                if not item.future.done():  # a client that hung up has cancelled its future
                    timing = BatchTiming(started - item.submitted, elapsed, len(batch))
                    item.future.set_result((outputs[row], timing))
        finally:
            self._slots.release()
