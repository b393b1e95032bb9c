"""Service benchmark: real servers, a load generator in another process, side by side.

    python bench/service.py [--duration 10] [--loadgen auto|wrk|python]    (make bench-service)

Publishes random-weight cnn-mnist and resnet18-cifar10 (speed does not depend on the weights)
into a temporary repository with the real exporter, starts `python -m service` on it (batching
on, then off), and measures at concurrency 1, 16 and 64:
  (a) GET /health/live: the framework's ceiling on this machine;
  (b) POST /predict/cnn-mnist, a real MNIST digit as a raw PNG body;
  (c) POST /predict/resnet18-cifar10, a real CIFAR-10 photo as PNG, batching on and off
      (and cnn-mnist with batching off, to show batching on a model that is cheap per image).
Goals: (b) >= 50 % of (a) at concurrency 64; (c) on >= 3x the req/s of off, p99 no worse than 2x.
The load generator is wrk when it is installed (apt-get install wrk), else bench/loadgen.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testkit.fixture_images import cifar_test, encode, mnist_test
from testkit.live_server import running_server
from testkit.random_runs import publish_random_models

ROOT = Path(__file__).resolve().parent.parent

CONCURRENCY = (1, 16, 64)


@dataclass
class Result:
    scenario: str
    concurrency: int
    req_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float | None  # server CPU (all its threads) per request: steadier than req/s on a shared machine


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, body: Path | None, concurrency: int, duration: float, loadgen: str, work: Path) -> dict:
    """One measurement by the load generator, in its own process."""
    if loadgen == "wrk":
        script = work / "post.lua"
        if body is not None:
            script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\n'
                              f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "60s", url]
        if body is not None:
            cmd[1:1] = ["-s", str(script)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return parse_wrk(out)
    cmd = [sys.executable, str(ROOT / "bench" / "loadgen.py"), url, "--concurrency", str(concurrency),
           "--duration", str(duration)]
    if body is not None:
        cmd += ["--body", str(body), "--content-type", "image/png"]
    import json
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def parse_wrk(out: str) -> dict:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {"req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms(p50),
            "p99_ms": ms(p99), "errors": errors}


def measure(scenario: str, url: str, body: Path | None, pid: int, args, work: Path) -> list[Result]:
    results = []
    load(url, body, 4, 2, args.loadgen, work)  # warm-up: connections, caches, the batcher
    for concurrency in CONCURRENCY:
        cpu_before = cpu_seconds(pid)
        m = load(url, body, concurrency, args.duration, args.loadgen, work)
        cpu_after = cpu_seconds(pid)
        requests = m["req_s"] * args.duration
        cpu_us = (cpu_after - cpu_before) / requests * 1e6 if cpu_before is not None and requests else None
        results.append(Result(scenario, concurrency, m["req_s"], m["p50_ms"], m["p99_ms"], m["errors"], cpu_us))
        r = results[-1]
        print(f"  {scenario:40s} c={concurrency:<3d} {r.req_s:9.1f} req/s  p50 {r.p50_ms:8.2f} ms  "
              f"p99 {r.p99_ms:8.2f} ms  errors {r.errors}  server CPU {r.cpu_us or 0:7.0f} us/req", flush=True)
    return results


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load1, load5, _ = os.getloadavg()
    return f"{cpu}, {os.cpu_count()} cores, load average {load1:.1f}/{load5:.1f} at start, no GPU used"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    print(f"machine: {machine()}\nload generator: {args.loadgen}, one process beside the server\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        print("publishing random-weight cnn-mnist and resnet18-cifar10 ...", flush=True)
        repo = publish_random_models(work, [("cnn", "mnist"), ("resnet18", "cifar10")],
                                     ROOT / "tests" / "fixtures", parity_limit=16)
        digit, photo = work / "digit.png", work / "photo.png"
        digit.write_bytes(encode(mnist_test()[0][0]))
        photo.write_bytes(encode(cifar_test()[0][0]))
        results: list[Result] = []
        for batching in ("on", "off"):
            with running_server(repo, work, batching=batching, providers="cuda,cpu") as server:
                print(f"server: batching {batching}, default settings otherwise", flush=True)
                pid = server.process.pid
                if batching == "on":
                    results += measure("(a) GET /health/live", f"{server.url}/health/live", None, pid, args, work)
                results += measure(f"(b) cnn-mnist PNG, batching {batching}",
                                   f"{server.url}/predict/cnn-mnist", digit, pid, args, work)
                results += measure(f"(c) resnet18-cifar10 PNG, batching {batching}",
                                   f"{server.url}/predict/resnet18-cifar10", photo, pid, args, work)
    report(results)


def report(results: list[Result]) -> None:
    by = {(r.scenario, r.concurrency): r for r in results}
    print("\n| scenario | concurrency | req/s | p50 ms | p99 ms | errors | server CPU µs/req |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "n/a"
        print(f"| {r.scenario} | {r.concurrency} | {r.req_s:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {cpu} |")
    live, mnist = by[("(a) GET /health/live", 64)], by[("(b) cnn-mnist PNG, batching on", 64)]
    ratio = mnist.req_s / live.req_s
    print(f"\n(b)/(a) at concurrency 64: {ratio:.2f} (goal >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    if live.cpu_us and mnist.cpu_us:
        print(f"  by server CPU per request: (a) {live.cpu_us:.0f} us, (b) {mnist.cpu_us:.0f} us, "
              f"ratio {live.cpu_us / mnist.cpu_us:.2f}")
    for model in ("cnn-mnist", "resnet18-cifar10"):
        prefix = "(b)" if model == "cnn-mnist" else "(c)"
        for c in CONCURRENCY:
            on, off = by[(f"{prefix} {model} PNG, batching on", c)], by[(f"{prefix} {model} PNG, batching off", c)]
            speedup, p99 = on.req_s / off.req_s, on.p99_ms / off.p99_ms
            verdict = "met" if speedup >= 3 and p99 <= 2 else "NOT met"
            print(f"{model} batching on/off at concurrency {c}: {speedup:.2f}x req/s, p99 {p99:.2f}x"
                  + (f"  (goal >= 3x, p99 <= 2x: {verdict})" if model != "cnn-mnist" else ""))
    if any(r.errors for r in results):
        print("\nWARNING: some requests failed; see the errors column")


if __name__ == "__main__":
    main()
