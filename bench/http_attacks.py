"""Hostile HTTP clients against a real server: how long they hold it, and what it costs.

    python bench/http_attacks.py [--server granian|uvicorn] [--hold 60]
    python bench/http_attacks.py --url http://127.0.0.1:8000 --pid <server pid>   (a server already running)

Without --url it starts `python -m service` on the committed models/ with the default settings
(testkit.live_server). Each attack runs alone; a prober asks GET /health/live every 50 ms on a
connection opened before the attack (the event loop's stall: its slowest answer), and a fresh
client asks once in the middle (what a new user waits). Reported: how long until the server had
closed every attacking connection (capped at --hold), the most file descriptors and the most
RSS of the server's processes meanwhile, over what they were before. docs/results.md quotes it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from testkit.live_server import REPO_ROOT, running_server
from testkit.measure import process_tree

TEN_MB = 10 * 1024 * 1024


def usage(pid: int) -> tuple[int, int]:
    """(open file descriptors, RSS in bytes) of the process tree."""
    fds = rss = 0
    for each in process_tree(pid):
        try:
            fds += len(os.listdir(f"/proc/{each}/fd"))
            rss += int(Path(f"/proc/{each}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return fds, rss


class Prober:
    """GET /health/live every 50 ms on one kept-alive connection, in a process of its own (the
    attack's own threads would slow a thread of this one); the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url, self.slowest, self.done = url, multiprocessing.Value("d", 0.0), multiprocessing.Event()
        ready = multiprocessing.Event()
        self.process = multiprocessing.Process(target=self._run, args=(ready,), daemon=True)
        self.process.start()
        ready.wait(30)

    def _run(self, ready: Event) -> None:
        client = httpx.Client(base_url=self.url, timeout=120)
        client.get("/health/live")  # the connection exists before the attack
        ready.set()
        while not self.done.is_set():
            started = time.monotonic()
            try:
                client.get("/health/live")
            except httpx.HTTPError:
                client = httpx.Client(base_url=self.url, timeout=120)
            self.slowest.value = max(self.slowest.value, time.monotonic() - started)
            time.sleep(0.05)

    def stop(self) -> float:
        self.done.set()
        self.process.join(150)
        return self.slowest.value


def wait_closed(socks: list[socket.socket], hold_s: float, sample: Callable[[], None]) -> float:
    """Seconds until the server has closed every socket (or `hold_s`), sampling as it goes."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    started, open_ = time.monotonic(), len(socks)
    while open_ and time.monotonic() - started < hold_s:
        for key, _ in selector.select(timeout=0.2):
            try:
                if key.fileobj.recv(65536):
                    continue  # an answer (408, 431): the close follows
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            selector.unregister(key.fileobj)
            open_ -= 1
        sample()
    return time.monotonic() - started


def connections(address: tuple[str, int], count: int, first_bytes: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address)
        if first_bytes:
            sock.sendall(first_bytes)
        socks.append(sock)
    return socks


def send_all_or_refused(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server closed the connection: refused, as it should be


def short_upload(address: tuple[str, int]) -> socket.socket:
    """A 10 MB upload held one byte short: the server waits for the last byte."""
    sock = socket.create_connection(address)
    send_all_or_refused(sock, f"POST /predict/cnn-mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                              f"Content-Length: {TEN_MB - 1}\r\n\r\n".encode() + b"\0" * (TEN_MB - 2))
    return sock


def huge_head(address: tuple[str, int], head: bytes) -> socket.socket:
    sock = socket.create_connection(address)
    send_all_or_refused(sock, b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    send_all_or_refused(sock, head)
    return sock


# Built once, before any attack is timed.
HUGE_HEADER = b"X-Padding: " + b"a" * 64 * 2**20 + b"\r\n\r\n"
MANY_HEADERS = b"".join(b"X-%d: a\r\n" % i for i in range(300_000)) + b"\r\n"


def run_attack(url: str, pid: int, name: str, attack: Callable[[tuple[str, int]], list[socket.socket]],
               hold_s: float) -> str:
    address = (urlsplit(url).hostname, urlsplit(url).port)
    fds_before, rss_before = usage(pid)
    peak = [fds_before, rss_before]

    def sample() -> None:
        fds, rss = usage(pid)
        peak[0], peak[1] = max(peak[0], fds), max(peak[1], rss)

    prober = Prober(url)
    started = time.monotonic()
    socks = attack(address)
    sample()
    newcomer: list[str] = []

    def ask_once() -> None:
        asked = time.monotonic()
        try:
            status = str(httpx.get(f"{url}/health/live", timeout=hold_s + 30).status_code)
        except httpx.HTTPError as err:
            status = type(err).__name__
        newcomer.append(f"{status} after {time.monotonic() - asked:.2f} s")
    fresh = threading.Thread(target=ask_once, daemon=True)
    fresh.start()
    watched = wait_closed(socks, hold_s, sample)
    held = time.monotonic() - started  # sending included
    slowest = prober.stop()
    fresh.join(hold_s + 30)
    for sock in socks:
        sock.close()
    closed = "all closed" if watched < hold_s else f"still open after {hold_s:.0f} s"
    return (f"| {name} | {held:.1f} s ({closed}) | +{peak[0] - fds_before} | +{(peak[1] - rss_before) / 2**20:.0f} MB "
            f"| {slowest:.2f} s | {newcomer[0] if newcomer else 'no answer'} |")


ATTACKS: dict[str, Callable[[tuple[str, int]], list[socket.socket]]] = {
    "500 silent connections": lambda address: connections(address, 500, b""),
    "500 half-sent headers": lambda address: connections(address, 500, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
    "50 uploads 1 byte short of 10 MB": lambda address: [short_upload(address) for _ in range(50)],
    "a 64 MB header": lambda address: [huge_head(address, HUGE_HEADER)],
    "300,000 headers": lambda address: [huge_head(address, MANY_HEADERS)],
    "four 64 MB headers at once": lambda address: _at_once(4, lambda: huge_head(address, HUGE_HEADER)),
}


def _at_once(count: int, make: Callable[[], socket.socket]) -> list[socket.socket]:
    socks: list[socket.socket] = []
    threads = [threading.Thread(target=lambda: socks.append(make())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return socks


@contextmanager
def target(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    if args.url:
        yield args.url, args.pid
        return
    with tempfile.TemporaryDirectory() as logs, running_server(REPO_ROOT / "models", Path(logs), server=args.server,
                                                               providers="cpu", grpc_port=0) as server:
        yield server.url, server.process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--url", help="attack this server instead of starting one (then --pid)")
    parser.add_argument("--pid", type=int, help="the pid of the server at --url (its fds and RSS are read)")
    parser.add_argument("--hold", type=float, default=60, help="stop watching an attack after this long (s)")
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run only these attacks")
    args = parser.parse_args()
    if args.url and not args.pid:
        parser.error("--url needs --pid")
    with target(args) as (url, pid):
        print("| attack | held the server | fds | RSS | slowest /health/live (kept-alive prober) "
              "| a new client, once: status after |\n| --- | --- | --- | --- | --- | --- |", flush=True)
        for name in args.only or ATTACKS:
            print(run_attack(url, pid, name, ATTACKS[name], args.hold), flush=True)
            time.sleep(2)


if __name__ == "__main__":
    main()
