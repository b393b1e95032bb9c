"""A real server for the tests: `python -m service` on free 127.0.0.1 ports (HTTP and gRPC), in a subprocess.

`running_server` waits until every model has been tried and always stops the server (SIGTERM,
as a container runtime would; SIGKILL only if it hangs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    grpc_address: str | None = None  # host:port of the Open Inference Protocol over gRPC; None when off

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 60, **options})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_loaded(self) -> None:
        """Until every model has been tried: readiness is no longer "loading"."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5).json()["status"] != "loading":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the server did not finish loading in {STARTUP_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a container runtime sends it; SIGKILL only if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_server(repo: Path, log_dir: Path, *, checkout: Path = REPO_ROOT, **settings: object) -> Iterator[Server]:
    """`python -m service` serving `repo` on free loopback ports, with CNNZOO_<KEY> settings;
    `checkout` is where the service's code is imported from (another one: before/after benchmarks).

    Each server gets a gRPC port of its own (the default 8001 would clash between servers), and
    one worker process unless `workers=` says otherwise: a test that counts metrics, or reads
    the log, must talk to the process it counts."""
    port = free_port()
    settings.setdefault("grpc_port", free_port())
    env = {**os.environ, "CNNZOO_MODEL_REPOSITORY": str(repo), "CNNZOO_HOST": "127.0.0.1",
           "CNNZOO_PORT": str(port), "CNNZOO_ACCESS_LOG": "off", "CNNZOO_WORKERS": "1"}
    env.update({f"CNNZOO_{key.upper()}": str(value) for key, value in settings.items()})
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=checkout, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    grpc_port = int(settings["grpc_port"])
    server = Server(f"http://127.0.0.1:{port}", process, log_path, f"127.0.0.1:{grpc_port}" if grpc_port else None)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.stop()
