"""A small HTTP/1.1 load generator (asyncio streams, keep-alive), for machines without wrk.

    python bench/loadgen.py http://127.0.0.1:8000/health/live --concurrency 16 --duration 10
    python bench/loadgen.py http://127.0.0.1:8000/predict/cnn-mnist --body digit.png --content-type image/png

Prints one JSON line: requests, errors (non-200 answers), seconds, req_s, p50_ms, p99_ms.
Each of `concurrency` connections sends its next request as soon as the last is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


def build_request(url: str, body: bytes | None, content_type: str | None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    method = "POST" if body is not None else "GET"
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    if body is not None:
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return parts.hostname, parts.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def read_status(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length framed, as uvicorn sends them) and return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def connection(host: str, port: int, request: bytes, stop_at: float,
                     latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            status = await read_status(reader)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def run(url: str, body: bytes | None, content_type: str | None, concurrency: int,
              duration: float) -> dict:
    host, port, request = build_request(url, body, content_type)
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*(connection(host, port, request, start + duration, latencies, errors)
                           for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "seconds": round(seconds, 3),
            "req_s": len(latencies) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--body", type=Path, help="send this file as a POST body")
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    body = args.body.read_bytes() if args.body else None
    try:
        from uvloop import run as run_loop  # faster, so the generator steals less CPU from the server
    except ImportError:
        run_loop = asyncio.run
    print(json.dumps(run_loop(run(args.url, body, args.content_type, args.concurrency, args.duration))))


if __name__ == "__main__":
    main()
