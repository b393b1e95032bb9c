"""Where a `/predict` spends its CPU, stage by stage, measured in-process.

    python bench/stages.py [--model cnn-mnist] [--repeat 2000]      (make bench-stages)

Each stage is timed in CPU time of the thread that runs it (`time.thread_time`), so the figures
hold on a busy machine, where wall-clock time would count other processes. The last rows send
whole requests through the Litestar app in-process (ASGI, no sockets), a bare GET beside the
prediction, so the framework's share shows next to ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import numpy as np

from modelrepo.numerics import softmax
from modelrepo.providers import CPU
from service import strokes, tiny_png
from service.app import create_app
from service.batching import Batcher
from service.images import load, open_image
from service.metrics import Metrics
from service.predict import top_classes
from service.preprocess import KINDS, normalise
from service.repository import load_model
from service.schemas import Prediction, Timings
from service.settings import Settings
from testkit.fixture_images import cifar_test, encode, mnist_test

ROOT = Path(__file__).resolve().parent.parent


def cpu_us(stage: Callable[[], object], repeat: int) -> float:
    """Median thread CPU time of one call, in µs, over `repeat` calls (after a warm-up)."""
    for _ in range(min(50, repeat)):
        stage()
    samples = np.empty(repeat)
    for i in range(repeat):
        start = time.thread_time()
        stage()
        samples[i] = time.thread_time() - start
    return float(np.median(samples) * 1e6)


def process_cpu_us(run: Callable[[], None], count: int) -> float:
    """Process CPU time (every thread) per item of a loop that handles `count` items."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / count * 1e6


def asgi_request(app, method: str, path: str, body: bytes, content_type: str):
    """One request through the ASGI app in-process; returns (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode()),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def call() -> tuple[int, bytes]:
        sent: list[dict] = []  # this request's messages only

        async def send(message: dict) -> None:
            sent.append(message)
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn-mnist")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    model = load_model(ROOT / "models" / args.model, (CPU,), ort_threads=1)
    spec = model.spec
    image = mnist_test()[0][0] if spec.kind == "digit" else cifar_test()[0][0]
    png = encode(image)
    mode = "L" if spec.channels == 1 else "RGB"
    decoded = load(open_image(png, 10**8), mode)
    field = KINDS[spec.kind].field(decoded, spec.height, spec.width)
    x = normalise(field, spec)
    logits = model.infer(x[None])
    probabilities = softmax(logits)
    scores = top_classes(probabilities[0], model.card.classes, 3)
    answer = Prediction(model=model.id, label=scores[0].label, index=0, probability=scores[0].probability,
                        top_k=scores, provider=model.provider, timings_ms=Timings(0.1, 0.1, 0.1, 0.1))
    metrics = Metrics()
    record = metrics.batch_recorder(model.id)
    encoder = msgspec.json.Encoder()
    r = args.repeat
    rows = [
        ("header: open_image", cpu_us(lambda: open_image(png, 10**8), r)),
        ("decode: load (Pillow)", cpu_us(lambda: load(open_image(png, 10**8), mode), r)),
        *([("decode: header and pixels without Pillow (service.tiny_png)", cpu_us(lambda: tiny_png.decode(png), r))]
          if tiny_png.decode(png) is not None else []),
        (f"field: {spec.kind} preprocessing", cpu_us(lambda: KINDS[spec.kind].field(decoded, spec.height, spec.width), r)),
        *([(f"field: {spec.kind} preprocessing, numpy only (no service._digitfield)",
            without_c_steps(lambda: cpu_us(lambda: KINDS[spec.kind].field(decoded, spec.height, spec.width), r)))]
          if spec.kind == "digit" and strokes.native is not None else []),
        ("normalise (mean/std)", cpu_us(lambda: normalise(field, spec), r)),
        ("ONNX Runtime, batch 1", cpu_us(lambda: model.infer(x[None]), r)),
        ("softmax", cpu_us(lambda: softmax(logits), r)),
        ("top-k", cpu_us(lambda: top_classes(probabilities[0], model.card.classes, 3), r)),
        ("response: msgspec JSON", cpu_us(lambda: encoder.encode(answer), r)),
        ("metrics: request + batch", cpu_us(lambda: (metrics.record_request(model.id, "predict", 200, 0.001),
                                                     record(1, 0.001)), r)),
    ]
    rows.append(("batcher hand-off (submit -> worker -> answer)", handoff_cpu_us(x, r)))
    rows += framework_rows(png, args.model, r)
    width = max(len(name) for name, _ in rows)
    print(f"{args.model}: CPU time per request, by stage (median of {r}; thread CPU unless noted)\n"
          f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    for name, us in rows:
        print(f"  {name:<{width}}  {us:8.1f} µs")


def without_c_steps(measure: Callable[[], float]) -> float:
    """`measure()` with the digit procedure's C steps switched off (service/strokes.py: numpy's)."""
    saved, strokes.native = strokes.native, None
    try:
        return measure()
    finally:
        strokes.native = saved


def handoff_cpu_us(x: np.ndarray, repeat: int) -> float:
    """Process CPU per request of the batcher alone, with an infer that does nothing."""
    rows = np.zeros((1, 10))

    async def run() -> None:
        executor = ThreadPoolExecutor(2)
        batcher = Batcher(lambda batch: np.zeros((len(batch), 10)), executor, max_batch=32, window_s=0.002,
                          max_in_flight=2)
        batcher.start()
        for _ in range(repeat):
            await batcher.submit(x)
        await batcher.stop()
        executor.shutdown()
    del rows
    return process_cpu_us(lambda: asyncio.run(run()), repeat)


def framework_rows(png: bytes, model_id: str, repeat: int) -> list[tuple[str, float]]:
    """Whole requests through the app in-process: a bare GET, and the prediction."""
    settings = Settings(model_repository=ROOT / "models", providers=(CPU,), access_log=False)
    app = create_app(settings)

    async def run(n: int, method: str, path: str, body: bytes, content_type: str) -> None:
        call = asgi_request(app, method, path, body, content_type)
        for _ in range(n):
            status, _ = await call()
            assert status == 200, status

    async def measure() -> list[tuple[str, float]]:
        async with app.lifespan_manager() if hasattr(app, "lifespan_manager") else _Lifespan(app):
            while app.state.service.catalog.readiness().status == "loading":
                await asyncio.sleep(0.05)
            out = []
            for name, method, path, body, kind in (
                    ("whole request: GET /health/live (process CPU)", "GET", "/health/live", b"", "text/plain"),
                    (f"whole request: POST /predict/{model_id} (process CPU)", "POST", f"/predict/{model_id}",
                     png, "image/png")):
                await run(50, method, path, body, kind)
                start = time.process_time()
                await run(repeat, method, path, body, kind)
                out.append((name, (time.process_time() - start) / repeat * 1e6))
            return out
    return asyncio.run(measure())


class _Lifespan:
    """Run the app's lifespan (startup, shutdown) around a block, as a server would."""

    def __init__(self, app) -> None:
        self.app = app

    async def __aenter__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sent: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                                 self.queue.get, self.sent.put))
        await self.queue.put({"type": "lifespan.startup"})
        message = await self.sent.get()
        assert message["type"] == "lifespan.startup.complete", message

    async def __aexit__(self, *exc) -> None:
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.sent.get()
        await self.task


if __name__ == "__main__":
    main()
