"""The server as a whole: under concurrent load, with a broken model, and on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
import pytest
from testkit.fixture_images import encode, mnist_test
from service.app import SHUTDOWN_MESSAGE
from service.settings import SERVERS
from testkit.live_server import REPO_ROOT, running_server

from service.predict import top_classes
from service.preprocess import preprocess
from modelrepo.providers import CPU
from service.repository import load_model

PNG = {"content-type": "image/png"}


def batch_sizes(metrics: str, model: str) -> tuple[float, float]:
    """(ONNX Runtime calls, calls with more than one image) from the batch-size histogram."""
    def value(name: str, labels: str) -> float:
        match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", metrics, re.MULTILINE)
        return float(match.group(1)) if match else 0.0
    calls = value("cnnzoo_batch_size_count", f'model="{model}"')
    return calls, calls - value("cnnzoo_batch_size_bucket", f'le="1.0",model="{model}"')


def test_200_concurrent_requests_are_all_answered_correctly_in_shared_batches(server, random_repo: Path) -> None:
    digits = mnist_test()[0][:200]
    images = [encode(x) for x in digits]
    # The reference: each image alone, through the same preprocessing and ONNX file, in this process.
    reference = load_model(random_repo / "cnn-mnist", (CPU,))
    expected = [top_classes(reference.classify(preprocess(data, reference.spec, 10**8)[None])[0],
                            reference.card.classes, 3) for data in images]
    calls_before, batched_before = batch_sizes(httpx.get(f"{server.url}/metrics").text, "cnn-mnist")

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(http.post("/predict/cnn-mnist", content=data, headers=PNG)
                                          for data in images))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 200
    for response, want in zip(responses, expected):
        got = response.json()["top_k"]
        assert [(e["index"], e["probability"]) for e in got] == [(e.index, e.probability) for e in want]
    calls, batched = batch_sizes(httpx.get(f"{server.url}/metrics").text, "cnn-mnist")
    assert calls - calls_before < 200  # fewer ONNX Runtime calls than requests...
    assert batched - batched_before >= 1  # ...because some carried more than one image


def test_a_corrupt_model_is_unavailable_and_the_others_serve(repo_copy: Path, tmp_path: Path) -> None:
    onnx = repo_copy / "lenet5-cifar10" / "1" / "model.onnx"
    onnx.write_bytes(b"corrupt" * 1000)  # not ONNX, and not what the card's sha256 says
    card = json.loads((repo_copy / "cnn-mnist" / "card.json").read_text())  # the other one intact
    assert hashlib.sha256((repo_copy / "cnn-mnist" / "1" / "model.onnx").read_bytes()).hexdigest() == card["onnx_sha256"]
    with running_server(repo_copy, tmp_path) as server, server.client() as http:
        ready = http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] == ["cnn-mnist"]
        assert "sha256" in ready.json()["unavailable"]["lenet5-cifar10"]
        listed = {m["id"]: m for m in http.get("/models").json()["models"]}
        assert listed["lenet5-cifar10"]["status"] == "unavailable" and listed["lenet5-cifar10"]["provider"] is None
        assert "sha256" in listed["lenet5-cifar10"]["error"]
        assert listed["cnn-mnist"]["status"] == "ready"
        refused = http.post("/predict/lenet5-cifar10", content=encode(mnist_test()[0][0]), headers=PNG)
        assert refused.status_code == 503 and refused.json()["error"] == "model_unavailable"
        assert "sha256" in refused.json()["detail"]
        served = http.post("/predict/cnn-mnist", content=encode(mnist_test()[0][0]), headers=PNG)
        assert served.status_code == 200
        ready_gauge = {tuple(sorted(s.labels.items())): s.value
                       for f in text_string_to_metric_families(http.get("/metrics").text)
                       if f.name == "cnnzoo_model_ready" for s in f.samples}
        assert ready_gauge == {(("model", "cnn-mnist"), ("provider", "CPUExecutionProvider")): 1.0,
                               (("model", "lenet5-cifar10"), ("provider", "none")): 0.0}


def test_no_loadable_model_means_not_ready(repo_copy: Path, tmp_path: Path) -> None:
    for onnx in repo_copy.glob("*/1/model.onnx"):
        onnx.write_bytes(b"corrupt")
    with running_server(repo_copy, tmp_path) as server:
        ready = httpx.get(f"{server.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert httpx.get(f"{server.url}/health/live").status_code == 200


@pytest.mark.parametrize("asgi_server", SERVERS)
def test_sigterm_lets_in_flight_requests_finish(random_repo: Path, tmp_path: Path, asgi_server: str) -> None:
    # The body arrives in two parts a second apart: the request is inside the server, its body
    # half read, when SIGTERM arrives half-way.
    body = encode(mnist_test()[0][0])

    def slow_body():
        yield body[:50]
        time.sleep(1.0)
        yield body[50:]

    with running_server(random_repo, tmp_path, server=asgi_server) as server:
        answers: list[tuple[httpx.Response, float]] = []

        def send() -> None:
            answer = httpx.post(f"{server.url}/predict/cnn-mnist", content=slow_body(), headers=PNG, timeout=30)
            answers.append((answer, time.monotonic()))
        request = threading.Thread(target=send)
        request.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        exit_code = server.stop()
        request.join(30)
    assert answers, "the request in flight got no answer"
    answer, answered = answers[0]
    assert answer.status_code == 200 and answer.json()["model"] == "cnn-mnist", answer.text
    assert answered > signalled  # it was in flight at SIGTERM, and still answered
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM to exit as signalled.
    assert exit_code in (0, -signal.SIGTERM)
    assert SHUTDOWN_MESSAGE in server.log()


@pytest.mark.parametrize("asgi_server", SERVERS)
def test_connections_are_kept_alive_between_requests(random_repo: Path, tmp_path: Path, asgi_server: str) -> None:
    """Three predictions on one connection: the server neither closes it nor asks to."""
    body = encode(mnist_test()[0][0])
    with running_server(random_repo, tmp_path, server=asgi_server) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        sockets = []
        for _ in range(3):
            connection.request("POST", "/predict/cnn-mnist", body=body, headers=PNG)
            answer = connection.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["model"] == "cnn-mnist"
            assert (answer.getheader("connection") or "").lower() != "close"
            sockets.append(connection.sock)
        connection.close()
    assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)


def test_a_bad_setting_stops_the_server_at_once_with_its_name(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "CNNZOO_MAX_BATCH": "lots"}
    out = subprocess.run([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "CNNZOO_MAX_BATCH='lots'" in out.stderr


@pytest.mark.parametrize("batching", ["on", "off"])
def test_batching_can_be_switched_off(random_repo: Path, tmp_path: Path, batching: str) -> None:
    with running_server(random_repo, tmp_path, batching=batching, batch_window_ms=50) as server:
        async def fire() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                answers = await asyncio.gather(*(http.post("/predict/cnn-mnist", content=encode(x), headers=PNG)
                                                 for x in mnist_test()[0][:16]))
                assert all(a.status_code == 200 for a in answers)
        asyncio.run(fire())
        calls, batched = batch_sizes(httpx.get(f"{server.url}/metrics").text, "cnn-mnist")
    assert calls > 0
    assert (batched > 0) == (batching == "on")
