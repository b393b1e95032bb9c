"""Triton's perf_analyzer against cnnzoo's Open Inference Protocol, over HTTP and gRPC.

    python bench/perf_analyzer.py [--perf-analyzer PATH] [--interval-ms 5000]     (make bench-v2)

The same server and models as bench/service.py (random-weight cnn-mnist and resnet18-cifar10,
published by the real exporter; default settings, batching on), driven by perf_analyzer with its
own default input, random FP32 `image` tensors of batch 1, at concurrency 1, 4, 16 and 64, each
measurement in its own perf_analyzer run. It prints every command as run and a Markdown table:
perf_analyzer's throughput and client-side latencies, and the server's CPU per inference (all its
threads, from /proc), the steadier figure when server and load share the machine.

perf_analyzer comes from pip (`pip install perf-analyzer`, a binary in a wheel); its wheels
need glibc 2.38 or newer. Give the binary with --perf-analyzer or $PERF_ANALYZER if it is not on PATH.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from testkit.live_server import Server, running_server
from testkit.measure import cpu_seconds, machine_line
from testkit.random_runs import publish_random_models

ROOT = Path(__file__).resolve().parent.parent


ENDPOINTS = {"http": "v2_infer", "grpc": "v2_grpc_infer"}  # the metrics' endpoint labels

CONCURRENCY = (1, 4, 16, 64)
MODELS = ("cnn-mnist", "resnet18-cifar10")


@dataclass
class Point:
    protocol: str
    model: str
    concurrency: int
    infer_s: float | None  # None: perf_analyzer found no stable measurement
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None


def run(binary: str, protocol: str, server: Server, model: str, concurrency: int, interval_ms: int,
        work: Path) -> Point:
    out = work / f"{protocol}-{model}-{concurrency}.csv"
    url = server.url.removeprefix("http://") if protocol == "http" else server.grpc_address
    command = [binary, "-m", model, "-u", url, "-i", protocol, "--concurrency-range", f"{concurrency}:{concurrency}",
               "--measurement-interval", str(interval_ms), "--stability-percentage", "25", "--max-trials", "10",
               "-f", str(out)]
    print("$ " + shlex.join(command), flush=True)
    cpu_before, answered_before = cpu_seconds(server.process.pid), answered(server, protocol, model)
    done = subprocess.run(command, capture_output=True, text=True)
    cpu_after, answered_after = cpu_seconds(server.process.pid), answered(server, protocol, model)
    if done.returncode != 0 or not out.exists():
        print(done.stdout[-2000:] + done.stderr[-2000:], flush=True)
        return Point(protocol, model, concurrency, None)
    (row,) = list(csv.DictReader(out.open()))
    inferences = answered_after - answered_before
    cpu_us = (cpu_after - cpu_before) * 1e6 / inferences if cpu_before is not None and inferences else None
    return Point(protocol, model, concurrency, float(row["Inferences/Second"]),
                 float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000, cpu_us)


def answered(server: Server, protocol: str, model: str) -> int:
    """Inference requests the server has answered (200) for `model` over `protocol`, from its metrics."""
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    pattern = rf'^cnnzoo_requests_total\{{endpoint="{ENDPOINTS[protocol]}",model="{model}",status="200"\}} (\S+)$'
    match = re.search(pattern, metrics, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--perf-analyzer", default=os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer"))
    parser.add_argument("--interval-ms", type=int, default=5000, help="perf_analyzer's measurement window")
    args = parser.parse_args()
    if not args.perf_analyzer:
        sys.exit("perf_analyzer not found: pip install perf-analyzer (glibc >= 2.38), or give --perf-analyzer PATH")
    print(f"machine: {machine_line()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-v2-") as tmp:
        work = Path(tmp)
        print("publishing random-weight cnn-mnist and resnet18-cifar10 ...", flush=True)
        repo = publish_random_models(work, [("cnn", "mnist"), ("resnet18", "cifar10")],
                                     ROOT / "tests" / "fixtures", parity_limit=16)
        points = []
        with running_server(repo, work, providers="cuda,cpu") as server:
            for protocol in ("http", "grpc"):
                for model in MODELS:
                    for concurrency in CONCURRENCY:
                        points.append(run(args.perf_analyzer, protocol, server, model, concurrency,
                                          args.interval_ms, work))
    print("\n| protocol | model | concurrency | infer/s | p50 ms | p99 ms | server CPU µs/infer |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in points:
        if p.infer_s is None:
            print(f"| {p.protocol} | {p.model} | {p.concurrency} | no stable measurement | | | |")
            continue
        cpu = f"{p.cpu_us:.0f}" if p.cpu_us is not None else "n/a"
        print(f"| {p.protocol} | {p.model} | {p.concurrency} | {p.infer_s:.1f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {cpu} |")


if __name__ == "__main__":
    main()
