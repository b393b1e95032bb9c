"""Service benchmark: cnnzoo against the framework's ceiling and the obvious server, side by side.

    python bench/service_benchmark.py [--duration 8] [--rounds 3] [--soak 0]    (make bench-service)

Three servers run at once on loopback, each in its own processes, and are measured in turn,
round after round, so that a change in the machine's load hits all of them alike:
  bare    a Litestar GET that answers a constant (bench/bare_server.py): the framework's
          ceiling, on the same ASGI server and with as many processes as cnnzoo's default;
  peer    the obvious Litestar + ONNX Runtime server (bench/peer_server.py): a `sync_to_thread`
          handler, Pillow, one ONNX Runtime thread, no batching, `uvicorn` with one process;
  cnnzoo  `python -m service` as `make serve` starts it (batching on), and with batching off;
          for cnn-mnist also on uvicorn instead of Granian, with the access log on, and with
          the hot path off (CNNZOO_HOT_PATH=off: Litestar's router answers every request) and
          the C modules off (CNNZOO_C_MODULES=off: Pillow and numpy decode and preprocess); for
          both, with batches of up to 32 (CNNZOO_MAX_BATCH=32; the default on a CPU is 8 to 32
          per model), and serving the starter set without its int8 nets (what a worker's
          memory owes to them).
The load is wrk (apt-get install wrk; else bench/loadgen.py), concurrency 64, a real MNIST digit
or CIFAR-10 photo as a PNG body, to the committed `cnn-mnist` and `nin-cifar10`. It prints req/s,
p50/p99 and errors per round, the medians and every ratio, ONNX Runtime's own in-process
throughput for nin-cifar10 at batch 32 with the threads cnnzoo's processes use, and the RSS of
each cnnzoo worker. `--soak S` then loads cnnzoo for S seconds and compares its RSS before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.card import read_card
from modelrepo.starter import STARTER_SET
from service import machine
from testkit.fixture_images import cifar_test, encode, mnist_test
from testkit.live_server import free_port, running_server
from testkit.measure import machine_line, workers_rss_mb

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
CONCURRENCY = 64
SCENARIOS = ("cnn-mnist", "nin-cifar10")
# The starter set the service-speed goals were first measured on, before the int8 nets joined it.
WITHOUT_INT8 = tuple(m for m in STARTER_SET if not m.endswith("-int8"))


@dataclass(frozen=True)
class Variant:
    settings: dict  # CNNZOO_ settings
    measured_on: tuple[str, ...]  # the models loaded with it
    serves: tuple[str, ...] | None = None  # the model ids it serves; None: all of models/


VARIANTS = {
    "uvicorn": Variant({"server": "uvicorn"}, ("cnn-mnist",)),
    "access log on": Variant({"access_log": "on"}, ("cnn-mnist",)),
    "hot path off": Variant({"hot_path": "off"}, ("cnn-mnist",)),
    "C modules off": Variant({"c_modules": "off"}, ("cnn-mnist",)),
    "max batch 32": Variant({"max_batch": 32}, SCENARIOS),
    "no int8 nets": Variant({}, SCENARIOS, serves=WITHOUT_INT8),
}


@dataclass
class Measure:
    req_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, body: Path | None, duration: int, work: Path) -> Measure:
    """One measurement by the load generator in its own process: wrk if installed."""
    if shutil.which("wrk"):
        cmd = ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{duration}s", "--latency", "--timeout", "30s", url]
        if body is not None:
            script = work / f"{body.stem}.lua"
            script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\n'
                              f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
            cmd[1:1] = ["-s", str(script)]
        return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    cmd = [sys.executable, str(ROOT / "bench" / "loadgen.py"), url, "--concurrency", str(CONCURRENCY),
           "--duration", str(duration)] + (["--body", str(body), "--content-type", "image/png"] if body else [])
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return Measure(out["req_s"], out["p50_ms"], out["p99_ms"], out["errors"])


def parse_wrk(out: str) -> Measure:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return Measure(float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
                   ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)[1]),
                   ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)[1]), errors)


@contextmanager
def process_server(cmd: list[str], env: dict[str, str], ready_path: str, log: Path):
    """A server command on a free loopback port, stopped (SIGTERM) at the end."""
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not start: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(f"GET {ready_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/"):  # any answer: the app is up
                        break
            except OSError:
                pass
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def ort_batch32_images_per_s(model: str, threads: int, seconds: float = 5.0) -> float:
    """ONNX Runtime alone, in this process: batch 32 of preprocessed input, `threads` intra-op threads."""
    card = read_card(MODELS / model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((32, *card.input.shape)).astype(np.float32)
    for _ in range(3):
        session.run(None, {"image": x})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"image": x})
        runs += 1
    return runs * 32 / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--soak", type=int, default=0, help="then load cnnzoo for this many seconds")
    args = parser.parse_args()
    plan = machine.plan(None, 0)
    print(f"machine: {machine_line()}; cnnzoo's default: {plan.workers} processes ({plan.reason}), "
          f"{plan.ort_threads} ONNX Runtime thread(s) each; load generator: "
          f"{'wrk -t2' if shutil.which('wrk') else 'bench/loadgen.py'}, c{CONCURRENCY}, {args.duration} s\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        bodies = {"cnn-mnist": work / "digit.png", "nin-cifar10": work / "photo.png"}
        bodies["cnn-mnist"].write_bytes(encode(mnist_test()[0][0]))
        bodies["nin-cifar10"].write_bytes(encode(cifar_test()[0][0]))
        granian = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--factory", "--loop",
                   "uvloop", "--host", "127.0.0.1", "--port", "{port}", "--workers", str(plan.workers),
                   "--log-level", "warning", "bench.bare_server:create_app"]
        bare, _ = stack.enter_context(process_server(granian, {}, "/health/live", work / "bare.log"))
        peers = {m: stack.enter_context(process_server(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.peer_server:create_app", "--port", "{port}",
             "--log-level", "warning", "--no-access-log"], {"PEER_MODEL": str(MODELS / m)}, "/predict/x",
            work / f"peer-{m}.log"))[0] for m in SCENARIOS}
        cnnzoo = {b: stack.enter_context(running_server(MODELS, work, workers="auto", batching=b))
                  for b in ("on", "off")}
        # The choices behind the defaults, measured beside them: on the cheap model, where the
        # server's own cost shows, the other ASGI server, the access log on, the hot path off;
        # on both, the larger batches, and the starter set without its int8 nets (their memory).
        for name, variant in VARIANTS.items():
            repo = MODELS if variant.serves is None else repository_of(variant.serves, work / name.replace(" ", "-"))
            cnnzoo[name] = stack.enter_context(running_server(repo, work, workers="auto", **variant.settings))

        runs: dict[str, list[Measure]] = {}
        targets = [("bare GET", f"{bare}/health/live", None)]
        for m in SCENARIOS:
            targets += [(f"peer {m}", f"{peers[m]}/predict/{m}", bodies[m]),
                        (f"cnnzoo {m}", f"{cnnzoo['on'].url}/predict/{m}", bodies[m]),
                        (f"cnnzoo {m} batching off", f"{cnnzoo['off'].url}/predict/{m}", bodies[m])]
        targets += [(f"cnnzoo {m} {name}", f"{cnnzoo[name].url}/predict/{m}", bodies[m])
                    for name, variant in VARIANTS.items() for m in variant.measured_on]
        for url, body in {(u, b) for _, u, b in targets}:
            wrk(url, body, 2, work)  # warm-up: connections, caches, batchers
        for r in range(args.rounds):
            for name, url, body in targets:
                m = wrk(url, body, args.duration, work)
                runs.setdefault(name, []).append(m)
                print(f"round {r + 1}  {name:32s} {m.req_s:9.1f} req/s  p50 {m.p50_ms:7.2f} ms  "
                      f"p99 {m.p99_ms:7.2f} ms  errors {m.errors}", flush=True)
        rss = {name: workers_rss_mb(cnnzoo[name].process.pid) for name in ("on", "max batch 32", "no int8 nets")}
        report(runs, plan)
        ort_rate = ort_batch32_images_per_s("nin-cifar10", plan.workers * plan.ort_threads)
        served = statistics.median(m.req_s for m in runs["cnnzoo nin-cifar10"])
        print(f"\nnin-cifar10: ONNX Runtime alone, batch 32, {plan.workers * plan.ort_threads} threads: "
              f"{ort_rate:.0f} images/s; cnnzoo serves {served:.0f} req/s = {served / ort_rate:.2f} of it (goal >= 0.85)")
        mb = {name: ", ".join(f"{x:.0f} MB" for x in values) for name, values in rss.items()}
        print(f"cnnzoo RSS per worker process after the run: {mb['on']} (goal <= 200 MB); with max batch 32 "
              f"(the same load, larger batches): {mb['max batch 32']}; serving the starter set without its "
              f"int8 nets ({len(WITHOUT_INT8)} models): {mb['no int8 nets']}")
        if args.soak:
            soak(cnnzoo["on"], bodies["cnn-mnist"], args.soak, work)
    return 0


def report(runs: dict[str, list[Measure]], plan: machine.Plan) -> None:
    med = {name: Measure(*(statistics.median(getattr(m, f) for m in ms) for f in ("req_s", "p50_ms", "p99_ms")),
                         sum(m.errors for m in ms)) for name, ms in runs.items()}
    print("\n| server | req/s (median) | p50 ms | p99 ms | errors | ÷ peer | ÷ bare GET |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    bare = med["bare GET"].req_s
    for name, m in med.items():
        model = next((s for s in SCENARIOS if s in name), None)
        peer = f"{m.req_s / med[f'peer {model}'].req_s:.2f}" if model else ""
        print(f"| {name} | {m.req_s:.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.errors} | {peer} | {m.req_s / bare:.2f} |")
    mnist = med["cnnzoo cnn-mnist"]
    print(f"\ncnn-mnist: {mnist.req_s / med['peer cnn-mnist'].req_s:.2f}x the peer (goal >= 3.5), "
          f"{mnist.req_s / bare:.2f} of the bare GET on {plan.workers} processes (goal >= 0.33), "
          f"p99 {mnist.p99_ms:.1f} ms (goal <= 40), {mnist.errors} errors")
    for variant, spec in VARIANTS.items():
        for m in spec.measured_on:
            other, default = med[f"cnnzoo {m} {variant}"], med[f"cnnzoo {m}"]
            print(f"{m} with {variant}: {other.req_s / default.req_s:.2f}x the default's req/s, p99 {other.p99_ms:.1f} ms")


def repository_of(model_ids: tuple[str, ...], folder: Path) -> Path:
    """A model repository of links to some of models/ (the same files, a smaller set)."""
    folder.mkdir()
    for model_id in model_ids:
        (folder / model_id).symlink_to(MODELS / model_id, target_is_directory=True)
    return folder


def soak(server, body: Path, seconds: int, work: Path) -> None:
    before = workers_rss_mb(server.process.pid)
    m = wrk(f"{server.url}/predict/cnn-mnist", body, seconds, work)
    after = workers_rss_mb(server.process.pid)
    growth = max((a - b) / b for a, b in zip(after, before))
    print(f"\nsoak: {seconds} s at c{CONCURRENCY}: {m.req_s:.0f} req/s, {m.errors} errors; RSS "
          f"{', '.join(f'{b:.0f}->{a:.0f} MB' for b, a in zip(before, after))} (worst growth {100 * growth:.1f} %, goal < 5 %)")


if __name__ == "__main__":
    sys.exit(main())
