"""Dynamic batching on a real ONNX Runtime session: gathered, bounded, and exact."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from testkit.fixture_images import encode, mnist_test

from service import repository
from service.batching import Batcher, BatcherStopped
from service.preprocess import preprocess
from modelrepo.providers import CPU

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def model(random_repo: Path) -> repository.LoadedModel:
    return repository.load_model(random_repo / "cnn-mnist", (CPU,))


@pytest.fixture(scope="module")
def digits(model: repository.LoadedModel) -> np.ndarray:
    """64 real MNIST test digits, through the real PNG encoding and preprocessing."""
    return np.stack([preprocess(encode(x), model.spec, 10**8) for x in mnist_test()[0][:64]])


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def recording_batcher(model, executor, **options) -> tuple[Batcher, list[int]]:
    sizes: list[int] = []
    batcher = Batcher(model.infer, executor, on_batch=lambda size, _: sizes.append(size), **options)
    batcher.start()
    return batcher, sizes


async def test_concurrent_requests_share_calls_and_get_their_own_rows(model, digits, executor) -> None:
    batcher, sizes = recording_batcher(model, executor, max_batch=16, window_s=0.05, max_in_flight=2)
    answers = await asyncio.gather(*(batcher.submit(x) for x in digits))
    await batcher.stop()
    assert sum(sizes) == 64 and max(sizes) == 16 and len(sizes) <= 8
    alone = np.concatenate([model.infer(x[None]) for x in digits])  # one ORT call per image
    batched = np.stack([logits for logits, _ in answers])
    # Not merely close: ONNX Runtime computes each row of a batch on its own.
    assert np.array_equal(batched, alone)
    assert {timing.batch_size for _, timing in answers} <= set(sizes)


async def test_a_request_to_an_idle_model_runs_at_once(model, digits, executor) -> None:
    batcher, sizes = recording_batcher(model, executor, max_batch=32, window_s=5.0)
    started = time.perf_counter()
    _, timing = await batcher.submit(digits[0])
    await batcher.stop()
    assert sizes == [1]
    assert timing.queue_s < 0.5 and time.perf_counter() - started < 1.0  # not the 5 s window


async def test_while_a_batch_runs_the_next_one_gathers_for_at_most_the_window(model, digits, executor) -> None:
    def slow(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.3)  # holds the worker, so later requests find the model busy
        return model.infer(batch)

    sizes: list[int] = []
    batcher = Batcher(slow, executor, max_batch=32, window_s=0.1, max_in_flight=2,
                      on_batch=lambda size, _: sizes.append(size))
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(digits[0]))
    await asyncio.sleep(0.05)  # the first batch is running now
    later = [asyncio.ensure_future(batcher.submit(x)) for x in digits[1:4]]
    answers = await asyncio.gather(first, *later)
    await batcher.stop()
    assert sizes == [1, 3]  # the three later ones shared one call, with a worker to spare
    assert all(0.09 <= timing.queue_s < 0.5 for _, timing in answers[1:])


async def test_a_full_batch_does_not_wait_for_the_window(model, digits, executor) -> None:
    batcher, sizes = recording_batcher(model, executor, max_batch=8, window_s=5.0)
    started = time.perf_counter()
    await asyncio.gather(*(batcher.submit(x) for x in digits[:8]))
    await batcher.stop()
    assert sizes == [8] and time.perf_counter() - started < 2.0


async def test_switched_off_every_request_runs_alone(model, digits, executor) -> None:
    batcher, sizes = recording_batcher(model, executor, max_batch=32, window_s=0.05, enabled=False, max_in_flight=2)
    answers = await asyncio.gather(*(batcher.submit(x) for x in digits[:20]))
    await batcher.stop()
    assert sizes == [1] * 20
    assert np.array_equal(np.stack([a for a, _ in answers]), np.concatenate([model.infer(x[None]) for x in digits[:20]]))


async def test_an_inference_failure_reaches_every_request_of_the_batch(model, digits, executor) -> None:
    failing = [True]

    def flaky(batch: np.ndarray) -> np.ndarray:
        if failing[0]:
            raise RuntimeError("the GPU fell off the bus")
        return model.infer(batch)

    batcher = Batcher(flaky, executor, max_batch=4, window_s=0.05, max_in_flight=1)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(x) for x in digits[:8]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    # ...and the batcher keeps serving afterwards (its worker slot was given back each time).
    failing[0] = False
    logits, _ = await batcher.submit(digits[0])
    await batcher.stop()
    assert logits.shape == (10,)


async def test_stopping_refuses_queued_requests_and_finishes_running_ones(model, digits, executor) -> None:
    def slow(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return model.infer(batch)

    batcher = Batcher(slow, executor, max_batch=32, window_s=5.0, max_in_flight=1)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(digits[0]))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit(digits[1]))  # waits for the only worker
    await asyncio.sleep(0.05)
    await batcher.stop()
    logits, _ = await running
    assert logits.shape == (10,)
    with pytest.raises(BatcherStopped):
        await queued
    with pytest.raises(BatcherStopped):
        await batcher.submit(digits[0])


@pytest.mark.parametrize(("settings", "expected"), [
    ({"max_batch": 4}, 4),  # CNNZOO_MAX_BATCH=4: every model
    ({"max_batch": 4, "batching": False}, 1),
    ({}, "auto"),  # machine.plan: 32 with a GPU, else each model's machine.cpu_batch
])
async def test_each_model_batches_up_to_what_the_plan_and_its_own_speed_allow(random_repo: Path, settings: dict,
                                                                               expected) -> None:
    from service import machine
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_repository=random_repo, providers=(CPU,), grpc_port=0, **settings))
    async with app.lifespan():
        catalog = app.state.service.catalog
        await catalog.loaded.wait()
        batches = {e.id: (e.max_batch, e.batcher.max_batch) for e in catalog.entries.values()}
    if expected == "auto":
        # Both random-weight test models are small: a call of one image is far under 5 ms / 32.
        expected = machine.GPU_MAX_BATCH if machine.nvidia_gpus() else machine.CPU_BATCHES[1]
    assert batches == {"cnn-mnist": (expected, expected), "lenet5-cifar10": (expected, expected)}
