"""Issue 17, the HTTP side: hostile connections and requests cannot take the service down.

Real servers on loopback, Granian and uvicorn, spoken to over raw sockets where a well-behaved
client would not do what the test needs (stall, send half a request, send a megabyte of
headers). The limits are set small so each case is quick to hit: headers within 1 s, at most
16 KiB of them, bodies within 2 s, 4 connections per worker.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from testkit.fixture_images import encode, mnist_test
from testkit.live_server import Server, running_server

from service.settings import SERVERS

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 16_384
MAX_CONNECTIONS = 4
SLACK_S = 2.0  # a busy 2-core machine: the server's timers fire late, never early
DIGIT = encode(mnist_test()[0][0])
# What a forged log line would look like, if a newline in the path reached the log.
FORGED = "2026-01-01 00:00:00,000 INFO service: FORGED LINE"


@pytest.fixture(scope="module", params=SERVERS)
def limited(request: pytest.FixtureRequest, random_repo: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(random_repo, tmp_path_factory.mktemp(f"limited-{request.param}"), server=request.param,
                        header_read_timeout_s=HEADER_TIMEOUT_S, body_read_timeout_s=BODY_TIMEOUT_S,
                        max_header_bytes=MAX_HEADER_BYTES, max_connections=MAX_CONNECTIONS,
                        access_log="on") as server:
        yield server


def connect(server: Server) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port))
    sock.settimeout(30)
    return sock


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def json_of(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def answers_promptly(server: Server) -> None:
    """The server still serves, at once, on a fresh connection."""
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/predict/cnn-mnist", content=DIGIT, headers={"content-type": "image/png"}).status_code == 200
    assert time.monotonic() - started < 2


# ---- slow clients: the header and body deadlines ----------------------------------------------

@pytest.mark.parametrize("sent", [b"", b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
                         ids=["silent", "half-sent headers"])
def test_a_connection_that_never_finishes_its_headers_is_closed(limited: Server, sent: bytes) -> None:
    with connect(limited) as sock:
        sock.sendall(sent)
        answer, waited = until_closed(sock)
    assert answer == b"" or status_of(answer) >= 400
    assert 0.5 * HEADER_TIMEOUT_S < waited < HEADER_TIMEOUT_S + SLACK_S
    answers_promptly(limited)


def test_an_idle_kept_alive_connection_is_closed_too(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer, waited = until_closed(sock)
    assert status_of(answer) == 200  # answered, then the next request's headers never came
    assert waited < HEADER_TIMEOUT_S + SLACK_S


def test_a_body_that_never_arrives_whole_gets_408_and_the_connection_closes(limited: Server) -> None:
    for path in ("/predict/cnn-mnist", "/v2/models/cnn-mnist/infer"):
        with connect(limited) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + DIGIT[:100])
            answer, waited = until_closed(sock)
        assert status_of(answer) == 408, answer[:300]
        body = json_of(answer)
        assert "CNNZOO_BODY_READ_TIMEOUT_S" in (body["detail"] if path.startswith("/predict") else body["error"])
        assert 0.5 * BODY_TIMEOUT_S < waited < BODY_TIMEOUT_S + SLACK_S
    answers_promptly(limited)


def test_more_connections_than_the_cap_wait_or_are_refused_and_then_served(
        limited: Server, request: pytest.FixtureRequest) -> None:
    """Granian leaves connections over the cap in the listen backlog until a slot frees (here:
    the silent ones reach their header deadline); uvicorn answers them 503 at once."""
    silent = [connect(limited) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        answer = httpx.get(f"{limited.url}/health/live", timeout=30)
        waited = time.monotonic() - started
    finally:
        for sock in silent:
            sock.close()
    if request.node.callspec.params["limited"] == "granian":
        assert answer.status_code == 200 and waited > 0.5 * HEADER_TIMEOUT_S
    else:
        assert answer.status_code == 503 and waited < 1
    time.sleep(HEADER_TIMEOUT_S + 0.5)
    answers_promptly(limited)


# ---- oversized heads ----------------------------------------------------------------------------

def test_headers_over_the_limit_are_refused_and_the_connection_closed(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
                     + b"a" * (4 * MAX_HEADER_BYTES) + b"\r\n\r\n")
        answer, waited = until_closed(sock)
    # Granian: 431 Request Header Fields Too Large; uvicorn (h11): 400.
    assert status_of(answer) in (400, 431)
    assert waited < SLACK_S
    # Headers under the limit still pass.
    fine = httpx.get(f"{limited.url}/health/live", headers={"x-padding": "a" * (MAX_HEADER_BYTES // 2)})
    assert fine.status_code == 200


@pytest.mark.parametrize("head", [
    b"X-Padding: " + b"a" * 8_000_000 + b"\r\n",  # one 8 MB header
    b"".join(b"X-%d: a\r\n" % i for i in range(300_000)),  # 300,000 headers
], ids=["8 MB header", "300,000 headers"])
def test_a_huge_head_is_cut_off_without_stalling_the_server(limited: Server, head: bytes) -> None:
    with connect(limited) as sock:
        try:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what it should do
        answer, waited = until_closed(sock)
    assert answer == b"" or status_of(answer) in (400, 431)
    assert waited < SLACK_S
    answers_promptly(limited)


# ---- the log ----------------------------------------------------------------------------------

def test_a_newline_in_the_path_cannot_forge_a_log_line(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /static/%00%0a" + FORGED.replace(" ", "%20").encode()
                     + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer, _ = until_closed(sock)
    assert status_of(answer) == 404
    time.sleep(0.5)  # the access log line is written after the answer
    log = limited.log()
    assert "FORGED" in log  # the request was logged (the access log is on)...
    assert not any(line.startswith(FORGED) for line in log.splitlines())  # ...on its own line
