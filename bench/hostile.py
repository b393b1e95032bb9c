"""Issue 17: hostile uploads against a real server, one attack at a time, and two loads.

    python bench/hostile.py [--only NAME ...] [--no-load] [--checkout DIR] [--json out.json]   (make bench-hostile)

`python -m service` serves the committed models (models/) on loopback with the default
limits, as `make serve` does (one worker process: the one measured). It gets every file of
testkit/hostile.py (to lenet5-cifar10; a `batch-*` as one /batch request) and the request-side
attacks of testkit/hostile_http.py, which branch hostile-http defends: sent, and reported.
During each attack a thread GETs /health/live every 10 ms and another POSTs a 28x28 MNIST PNG
to cnn-mnist every 50 ms (their worst waits: the goals are 100 ms and 250 ms), and a third
samples the RSS of the server's process tree every 20 ms (peak growth over the RSS just before;
the goal is 600 MB). Then the loads: 64 clients at once each sending `batch-64-zero-png` (goal:
peak RSS under 1.5 GB), and 64 clients sending 64-image batches of MNIST PNGs for 20 s (all 200).
`--checkout DIR` serves another checkout's service/ (e.g. `git worktree add /tmp/main main`:
the figures before issue 17). `--throughput DIR` instead measures what the defences cost a
normal request: a 28x28 MNIST PNG to /predict/cnn-mnist from 16 connections (bench/loadgen.py),
this checkout against DIR, alternating rounds; req/s and server CPU per request.
`--in-process` decodes each file in a fresh process of its own, no server (CPU seconds and
peak RSS growth, from VmHWM): the figures the limits were set from.
Figures: docs/results.md, "Hostile uploads".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from testkit import hostile, hostile_http as attack
from testkit.fixture_images import encode, mnist_test
from testkit.live_server import REPO_ROOT, Server, running_server
from testkit.measure import children, cpu_seconds, machine_line, rss_mb

MODEL, DIGIT_MODEL = "lenet5-cifar10", "cnn-mnist"
DIGIT = encode(mnist_test()[0][0])
REQUEST_TIMEOUT_S = 120


@dataclass
class Row:
    name: str
    outcome: str
    seconds: float
    server_cpu_s: float
    worst_live_ms: float
    worst_predict_ms: float
    peak_rss_growth_mb: float
    rss_after_mb: float


class Watch:
    """The three threads that run during an attack: /health/live, a 28x28 /predict, RSS."""

    def __init__(self, server: Server) -> None:
        self.server, self.live_s, self.predict_s, self.peak_mb = server, 0.0, 0.0, 0.0
        self._stop = threading.Event()
        # Each prober's connection is open before the attack starts: the waits measure the
        # event loop, not a turn in the listen backlog behind the attack's connections.
        self._connected = threading.Semaphore(0)
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._live, self._predict, self._rss)]

    def tree_rss_mb(self) -> float:
        pid = self.server.process.pid
        try:
            return sum(rss_mb(p) for p in (pid, *children(pid)))
        except OSError:
            return 0.0

    def _timed(self, call: Callable[[httpx.Client], object], every_s: float) -> float:
        worst = 0.0
        with self.server.client(timeout=REQUEST_TIMEOUT_S) as http:
            try:
                call(http)
            except httpx.HTTPError:
                pass
            self._connected.release()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    call(http)
                except httpx.HTTPError:
                    pass
                worst = max(worst, time.perf_counter() - started)
                self._stop.wait(every_s)
        return worst

    def _live(self) -> None:
        self.live_s = self._timed(lambda http: http.get("/health/live"), 0.01)

    def _predict(self) -> None:
        self.predict_s = self._timed(lambda http: http.post(f"/predict/{DIGIT_MODEL}", content=DIGIT,
                                                            headers={"content-type": "image/png"}), 0.05)

    def _rss(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.tree_rss_mb())
            self._stop.wait(0.02)

    def measure(self, name: str, run: Callable[[], str]) -> Row:
        before_mb, before_cpu = self.tree_rss_mb(), cpu_seconds(self.server.process.pid) or 0.0
        self.peak_mb = before_mb
        for thread in self._threads:
            thread.start()
        for _ in range(2):  # the two probers
            self._connected.acquire()
        started = time.perf_counter()
        try:
            outcome = run()
        except Exception as err:  # noqa: BLE001 - report and go on with the next attack
            outcome = f"bench error: {type(err).__name__}: {err}"[:120]
        seconds = time.perf_counter() - started
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return Row(name, outcome, round(seconds, 2), round((cpu_seconds(self.server.process.pid) or 0) - before_cpu, 2),
                   round(self.live_s * 1000), round(self.predict_s * 1000), round(self.peak_mb - before_mb),
                   round(self.tree_rss_mb()))


def send_file(server: Server, case: hostile.Hostile) -> Callable[[], str]:
    data = case.build()

    def run() -> str:
        with server.client(timeout=REQUEST_TIMEOUT_S) as http:
            if case.copies > 1:
                response = http.post(f"/predict/{MODEL}/batch",
                                     files=[("files", (f"{i}", data)) for i in range(case.copies)])
                codes = [entry.get("error", "200") for entry in response.json().get("results", [])]
                detail = ", ".join(f"{codes.count(c)} {c}" for c in sorted(set(codes)))
                return f"{response.status_code} ({detail})"
            response = http.post(f"/predict/{MODEL}", content=data,
                                 headers={"content-type": "application/octet-stream"})
            body = response.json()
            return f"{response.status_code} {body.get('error', body.get('label', ''))}"
    return run


def http_attacks(server: Server) -> dict[str, Callable[[], str]]:
    url, photo = server.url, hostile.encode(hostile.photo(), "PNG")
    half_headers = b"POST /predict/x HTTP/1.1\r\nHost: x\r\n"
    return {
        "http-500-silent-connections": lambda: attack.held_connections(url, 500, b"", 5),
        "http-500-half-sent-headers": lambda: attack.held_connections(url, 500, half_headers, 5),
        "http-50-uploads-1-byte-short": lambda: attack.uploads_one_byte_short(url),
        "http-64mb-header": lambda: attack.huge_header(url),
        "http-300k-headers": lambda: attack.many_headers(url),
        "http-non-utf8-text-part-predict": lambda: attack.non_utf8_text_part(url, f"/predict/{MODEL}", photo),
        "http-non-utf8-text-part-batch": lambda: attack.non_utf8_text_part(url, f"/predict/{MODEL}/batch", photo),
        "http-static-nul": lambda: attack.get(url, "/static/%00"),
        "http-static-300-char-name": lambda: attack.get(url, "/static/" + "a" * 300),
        "http-static-forged-log-line": lambda: attack.forged_log_line(url, server.log),
        "http-1001-multipart-parts": lambda: attack.many_parts(url, f"/predict/{MODEL}/batch", photo),
        "http-100kb-filename": lambda: attack.long_filename(url, f"/predict/{MODEL}/batch", photo),
        # /models, not /health/live: the probes answer any Host by design (service/guards.py).
        "http-host-evil-example": lambda: attack.get(url, "/models", {"Host": "evil.example"}),
        "http-cross-site-post": lambda: attack.cross_site_post(url, f"/predict/{MODEL}", photo),
    }


def hostile_batches_at_once(server: Server, clients: int = 64) -> Callable[[], str]:
    data = hostile.CORPUS["batch-64-zero-png"].build()
    files = [("files", (f"{i}", data)) for i in range(64)]

    def one(_: int) -> str:
        try:
            with server.client(timeout=600) as http:
                return str(http.post(f"/predict/{MODEL}/batch", files=files).status_code)
        except httpx.HTTPError as err:
            return type(err).__name__
    def run() -> str:
        with ThreadPoolExecutor(clients) as pool:
            return _tally(pool.map(one, range(clients)))
    return run


def normal_batches_for(server: Server, seconds: float = 20, clients: int = 64) -> Callable[[], str]:
    files = [("files", (f"{i}.png", encode(digit))) for i, digit in enumerate(mnist_test()[0][:64])]

    def one(_: int) -> list[str]:
        statuses = []
        with server.client(timeout=REQUEST_TIMEOUT_S) as http:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    statuses.append(str(http.post(f"/predict/{DIGIT_MODEL}/batch", files=files).status_code))
                except httpx.HTTPError as err:
                    statuses.append(type(err).__name__)
        return statuses
    def run() -> str:
        with ThreadPoolExecutor(clients) as pool:
            return _tally(status for statuses in pool.map(one, range(clients)) for status in statuses)
    return run


def _tally(outcomes) -> str:
    outcomes = list(outcomes)
    return ", ".join(f"{outcomes.count(o)}x {o}" for o in sorted(set(outcomes)))


# The decoding and preprocessing of one 28x28 PNG, timed in a process of its own importing a
# checkout's service/: the steady part of the comparison, where HTTP rounds vary with the load.
PREPROCESS_TIMING = """
import sys, timeit
from service.preprocess import InputSpec, preprocess
spec = InputSpec(kind="digit", channels=1, height=28, width=28, mean=(0.1307,), std=(0.3081,))
data = open(sys.argv[1], "rb").read()
for _ in range(500):
    preprocess(data, spec, 40_000_000)
print(min(timeit.repeat(lambda: preprocess(data, spec, 40_000_000), number=3000, repeat=7)) / 3000 * 1e6)
"""


# One file decoded and preprocessed for lenet5-cifar10's input (RGB, 32x32) under the default
# limits of whichever checkout is imported (before issue 17 the limit was one int).
DECODE_ALONE = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from service.preprocess import InputSpec, preprocess
from service.settings import Settings
try:
    from service.images import ImageLimits
    settings = Settings()
    limits = ImageLimits(settings.max_image_pixels, settings.max_jpeg_pixels)
except ImportError:
    limits = Settings().max_image_pixels
spec = InputSpec(kind="photo", channels=3, height=32, width=32, mean=(0.5,) * 3, std=(0.25,) * 3)
data = open(sys.argv[1], "rb").read()

def kb(field):  # from /proc/self/status; ru_maxrss would start at the parent's peak
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before, started = kb("VmRSS:"), time.process_time()
try:
    preprocess(data, spec, limits)
    outcome = "decoded"
except Exception as err:
    outcome = type(err).__name__
print(json.dumps({"cpu_s": time.process_time() - started, "outcome": outcome,
                  "peak_mb": (kb("VmHWM:") - before) / 1024}))
"""


def decode_alone(checkout: Path, only: list[str] | None) -> None:
    print(f"{'file':28s} {'cpu s':>6s} {'+peak MB':>9s}  outcome (one copy of a batch's file)")
    with tempfile.TemporaryDirectory() as work:
        for name, case in hostile.CORPUS.items():
            if only and name not in only:
                continue
            path = Path(work) / name
            path.write_bytes(case.build())
            try:
                run = subprocess.run([sys.executable, "-c", DECODE_ALONE, str(path)], cwd=checkout,
                                     capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S)
                out = json.loads(run.stdout) if run.returncode == 0 else {"cpu_s": -1, "peak_mb": -1,
                                                                          "outcome": run.stderr[-80:]}
            except subprocess.TimeoutExpired:
                out = {"cpu_s": -1, "peak_mb": -1, "outcome": f"over {REQUEST_TIMEOUT_S} s"}
            print(f"{name:28s} {out['cpu_s']:6.2f} {out['peak_mb']:9.0f}  {out['outcome']}", flush=True)


def throughput(checkouts: dict[str, Path], rounds: int = 4, seconds: float = 8) -> None:
    """req/s and server CPU µs per request of a 28x28 /predict, each checkout in turn, round after
    round; then the in-process cost of decoding and preprocessing it."""
    with tempfile.TemporaryDirectory() as work:
        body = Path(work) / "digit.png"
        body.write_bytes(DIGIT)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
        with running_server(REPO_ROOT / "models", Path(work), checkout=checkouts["this"]) as this, \
                running_server(REPO_ROOT / "models", Path(work), checkout=checkouts["baseline"]) as baseline:
            servers = {"this": this, "baseline": baseline}
            for _ in range(rounds):
                for name, server in servers.items():
                    before = cpu_seconds(server.process.pid) or 0.0
                    out = json.loads(subprocess.run(
                        [sys.executable, str(REPO_ROOT / "bench" / "loadgen.py"), f"{server.url}/predict/{DIGIT_MODEL}",
                         "--body", str(body), "--content-type", "image/png", "--concurrency", "16",
                         "--duration", str(seconds)], capture_output=True, text=True, check=True).stdout)
                    cpu_us = ((cpu_seconds(server.process.pid) or 0.0) - before) / max(1, out["requests"]) * 1e6
                    results[name].append((out["req_s"], cpu_us))
                    print(f"{name:9s} {out['req_s']:8.1f} req/s  {cpu_us:6.0f} µs CPU/req  errors {out['errors']}",
                          flush=True)
        timed = {name: float(subprocess.run([sys.executable, "-c", PREPROCESS_TIMING, str(body)], cwd=checkout,
                                            capture_output=True, text=True, check=True).stdout)
                 for name, checkout in checkouts.items()}
    medians = {name: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in results.items()}
    (req_this, cpu_this), (req_base, cpu_base) = medians["this"], medians["baseline"]
    print(f"median: this {req_this:.1f} req/s, {cpu_this:.0f} µs/req; baseline {req_base:.1f} req/s, "
          f"{cpu_base:.0f} µs/req; this / baseline: {req_this / req_base:.3f} req/s, {cpu_this / cpu_base:.3f} CPU")
    print(f"decode + preprocess of the 28x28 PNG, in process: this {timed['this']:.1f} µs, baseline "
          f"{timed['baseline']:.1f} µs ({timed['this'] / timed['baseline']:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these attacks only (names as printed)")
    parser.add_argument("--no-load", action="store_true", help="leave out the two loads")
    parser.add_argument("--checkout", type=Path, default=REPO_ROOT, help="serve this checkout's service/")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--throughput", type=Path, metavar="DIR",
                        help="only compare a normal 28x28 /predict's throughput: this checkout against DIR's")
    parser.add_argument("--in-process", action="store_true",
                        help="only decode each file in a fresh process (no server): CPU and peak RSS")
    args = parser.parse_args()
    print(machine_line())
    if args.in_process:
        decode_alone(args.checkout, args.only)
        return 0
    if args.throughput:
        throughput({"this": args.checkout, "baseline": args.throughput})
        return 0
    print(f"server: {args.checkout}, models {REPO_ROOT / 'models'}, default limits, 1 worker process")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as logs, running_server(REPO_ROOT / "models", Path(logs),
                                                               checkout=args.checkout) as server:
        attacks = {name: send_file(server, case) for name, case in hostile.CORPUS.items()}
        attacks |= http_attacks(server)
        if not args.no_load:
            attacks["load-64-hostile-batches-at-once"] = hostile_batches_at_once(server)
            attacks["load-64-clients-64-image-batches-20s"] = normal_batches_for(server)
        unknown = set(args.only or ()) - set(attacks)
        if unknown:
            parser.error(f"no attack {', '.join(sorted(unknown))}; known: {', '.join(attacks)}")
        print(f"{'attack':40s} {'s':>6s} {'cpu s':>6s} {'live ms':>8s} {'28px ms':>8s} {'+RSS MB':>8s} "
              f"{'RSS MB':>7s}  outcome")
        for name, run in attacks.items():
            if args.only and name not in args.only:
                continue
            if server.process.poll() is not None:
                print(f"{name:40s} the server has exited ({server.process.returncode})")
                break
            row = Watch(server).measure(name, run)
            rows.append(row)
            print(f"{row.name:40s} {row.seconds:6.2f} {row.server_cpu_s:6.2f} {row.worst_live_ms:8.0f} "
                  f"{row.worst_predict_ms:8.0f} {row.peak_rss_growth_mb:8.0f} {row.rss_after_mb:7.0f}  {row.outcome}",
                  flush=True)
        server_log = server.log()
    print(f"server log: {len(server_log.splitlines())} lines, {server_log.count('Pillow: ')} Pillow warnings, "
          f"{server_log.count('Traceback')} tracebacks")
    print(f"load average at the end: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
