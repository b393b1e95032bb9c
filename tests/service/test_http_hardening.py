"""Issue 17, the HTTP side: hostile connections and requests cannot take the service down.

Real servers on loopback, Granian and uvicorn, spoken to over raw sockets where a well-behaved
client would not do what the test needs (stall, send half a request, send megabytes of
headers). Their limits are set small so each case is quick to hit: headers within 1 s, at most
16 KiB of them, bodies within 2 s, 4 connections per worker. The guard against other sites'
pages, /schema and the broken-model answers are checked on the shared server (conftest.py);
the pieces (host names, the log formatter, the server options) in-process at the end.
"""

from __future__ import annotations

import json
import logging
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

from service.guards import AllowedHosts, hostname
from service.http_limits import granian_options, uvicorn_options
from service.logs import UntrustedTextFormatter
from service.settings import SERVERS, Settings

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


def test_a_body_refused_before_it_is_read_closes_the_connection(client: httpx.Client) -> None:
    """The rest of the body may still be coming: a client told `Connection: close` does not send
    its next request down a connection the server is closing (httpx did, now and then)."""
    for path in ("/predict/cnn-mnist", "/v2/models/cnn-mnist/infer"):
        refused = client.post(path, content=b"\0" * 1_500_000, headers={"content-type": "image/png"})
        assert refused.status_code == 413 and refused.headers["connection"] == "close", path
        assert client.get("/health/live").status_code == 200  # a new connection, at once


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


# ---- who may ask: allowed hosts, no cross-site writes (the shared server, CNNZOO_HOST=127.0.0.1) --

PNG = {"content-type": "image/png"}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_host_the_server_does_not_answer_to_is_refused(client: httpx.Client, host: str) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, but the Host header keeps it."""
    for path in ("/models", "/metrics", "/"):
        refused = client.get(path, headers={"host": host})
        assert refused.status_code == 400 and refused.json()["error"] == "unknown_host", refused.text
    posted = client.post("/predict/cnn-mnist", content=DIGIT, headers={**PNG, "host": host})
    assert posted.status_code == 400 and "CNNZOO_ALLOWED_HOSTS" in posted.json()["detail"]
    v2 = client.get("/v2/models/cnn-mnist", headers={"host": host})
    assert v2.status_code == 400 and set(v2.json()) == {"error"}  # the protocol's own shape


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1", "[::1]:8000", "localhost."])
def test_the_loopback_names_are_answered(client: httpx.Client, host: str) -> None:
    assert client.get("/models", headers={"host": host}).status_code == 200


def test_the_health_probes_answer_any_host(client: httpx.Client) -> None:
    """A kubelet probes with the pod's IP as Host."""
    for path in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
        assert client.get(path, headers={"host": "10.244.3.17:8000"}).status_code == 200, path


@pytest.mark.parametrize("headers", [
    {"sec-fetch-site": "cross-site", "origin": "http://evil.example"},
    {"sec-fetch-site": "same-site", "origin": "http://localhost:3000"},  # another local web app
    {"sec-fetch-site": "cross-site", "origin": "null"},  # a file:// page
    {"origin": "http://evil.example"},  # a browser that sends no Sec-Fetch-* headers
    {"origin": "null"},
], ids=["cross-site", "same-site", "file page", "foreign origin", "null origin"])
def test_a_browser_page_of_another_site_cannot_post(client: httpx.Client, headers: dict) -> None:
    for request in ({"url": "/predict/cnn-mnist", "files": [("file", ("a.png", DIGIT, "image/png"))]},
                    {"url": "/predict/cnn-mnist/batch", "files": [("files", ("a.png", DIGIT, "image/png"))]}):
        refused = client.post(**request, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "cross_site_request"
    v2 = client.post("/v2/models/cnn-mnist/infer", content=b"{}", headers={**headers, "content-type": "text/plain"})
    assert v2.status_code == 403 and set(v2.json()) == {"error"}


@pytest.mark.parametrize("headers", [
    {},  # curl, Python, tritonclient: no browser headers at all
    {"sec-fetch-site": "same-origin", "origin": "{url}"},  # the service's own page
    {"sec-fetch-site": "none"},  # typed by the user
    {"origin": "http://localhost:3000"},  # an allowed host name (no Sec-Fetch-Site: an older browser)
], ids=["no browser", "own page", "user typed", "allowed origin"])
def test_clients_and_the_own_page_still_post(server: Server, client: httpx.Client, headers: dict) -> None:
    headers = {key: value.format(url=server.url) for key, value in headers.items()}
    answered = client.post("/predict/cnn-mnist", files=[("file", ("a.png", DIGIT, "image/png"))], headers=headers)
    assert answered.status_code == 200, answered.text


def test_reads_from_another_site_are_not_writes(client: httpx.Client) -> None:
    """Only requests that act are guarded; a cross-site GET (an <img> tag, say) is answered."""
    assert client.get("/models", headers={"sec-fetch-site": "cross-site"}).status_code == 200


# ---- /schema works offline --------------------------------------------------------------------

@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_the_schema_pages_load_every_script_from_this_server(client: httpx.Client, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200 and "SwaggerUIBundle" in html.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert len(urls) >= 3, urls  # the bundle, the preset, the stylesheet (and the icon)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not this server's"
        fetched = client.get(url)
        assert fetched.status_code == 200 and fetched.content, url
    assert client.get("/schema/openapi.json").json()["info"]["title"] == "cnnzoo"


def test_schema_pages_without_local_scripts_are_not_served(client: httpx.Client) -> None:
    for page in ("/schema/redoc", "/schema/elements", "/schema/rapidoc"):
        assert client.get(page).status_code == 404
    assert client.get("/schema/assets/../../settings.py").status_code == 404
    assert client.get("/schema/assets/swagger-editor-bundle.js").status_code == 404  # shipped, but not offered


# ---- say less: no server paths, no library internals ------------------------------------------

def test_broken_models_are_explained_without_server_paths(repo_copy: Path, tmp_path: Path) -> None:
    (repo_copy / "lenet5-cifar10" / "card.json").write_text("{not json")
    (repo_copy / "cnn-mnist" / "1" / "model.onnx").unlink()
    (repo_copy / "cnn-mnist" / "1" / "model.onnx").mkdir()
    with running_server(repo_copy, tmp_path) as server, server.client() as http:
        said = [http.get("/health/ready").text, http.get("/models").text,
                http.get("/models/cnn-mnist").text, http.get("/models/lenet5-cifar10").text,
                http.post("/predict/cnn-mnist", content=DIGIT, headers=PNG).text,
                http.post("/predict/lenet5-cifar10", content=DIGIT, headers=PNG).text,
                http.get("/v2/models/cnn-mnist/ready").text]
    errors = {m["id"]: m["error"] for m in json.loads(said[1])["models"]}
    assert errors == {"cnn-mnist": "cnn-mnist: 1/model.onnx cannot be read (Is a directory)",
                      "lenet5-cifar10": "lenet5-cifar10: card.json is not a valid card: JSON is malformed: "
                                        "object keys must be strings (byte 1)"}
    for text in said:
        assert str(repo_copy) not in text and str(tmp_path) not in text and "/tmp" not in text, text


# ---- the pieces, in-process -------------------------------------------------------------------

@pytest.mark.parametrize(("bind", "allowed", "refused"), [
    ("127.0.0.1", ["localhost", "127.0.0.1", "::1"], ["evil.example", "10.0.0.5", "0.0.0.0"]),
    # In a container the server binds every address, and users reach it on a published loopback port.
    ("0.0.0.0", ["localhost", "127.0.0.1"], ["0.0.0.0", "gpu-box", "evil.example"]),
    ("::", ["localhost", "::1"], ["::", "evil.example"]),
    ("10.0.0.5", ["10.0.0.5", "localhost"], ["10.0.0.6"]),
    ("gpu-box", ["gpu-box", "localhost"], ["gpu-box.evil.example"]),
])
def test_by_default_the_loopback_names_and_the_bound_host_are_allowed(
        bind: str, allowed: list[str], refused: list[str]) -> None:
    hosts = AllowedHosts.of(Settings(host=bind))
    assert all(hosts.allow(name) for name in allowed)
    assert not any(hosts.allow(name) for name in refused)


def test_allowed_hosts_may_be_any_or_a_whole_domain() -> None:
    assert AllowedHosts.of(Settings(allowed_hosts=("*",))).allow("anything.example")
    domain = AllowedHosts.of(Settings(allowed_hosts=("*.svc.cluster.local", "Cnnzoo.Example:8000", "[::1]")))
    assert domain.allow("cnnzoo.default.svc.cluster.local") and domain.allow("cnnzoo.example")
    assert domain.allow(hostname("[::1]:8000"))
    assert not domain.allow("svc.cluster.local.evil") and not domain.allow("localhost")


@pytest.mark.parametrize(("authority", "name"), [
    ("LocalHost:8000", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"),
    ("example.com.", "example.com"), ("10.1.2.3", "10.1.2.3"),
])
def test_host_headers_are_compared_by_name(authority: str, name: str) -> None:
    assert hostname(authority) == name


def test_log_lines_escape_control_characters_whoever_wrote_the_message() -> None:
    record = logging.LogRecord("service", logging.INFO, __file__, 1, "no route %s", (f"/x\n{FORGED}\r\x1b[31m",), None)
    line = UntrustedTextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO service: no route /x\\n" + FORGED + "\\r\\x1b[31m"
    assert "\n" not in line


def test_the_limits_reach_each_server_in_its_own_units() -> None:
    settings = Settings(max_header_bytes=20_000, header_read_timeout_s=1.5, max_connections=7)
    granian = granian_options(settings)
    assert granian["backpressure"] == 7
    assert (granian["http1_settings"].max_buffer_size, granian["http1_settings"].header_read_timeout) == (20_000, 1500)
    uvicorn = uvicorn_options(settings)
    assert uvicorn["limit_concurrency"] == 7 and uvicorn["h11_max_incomplete_event_size"] == 20_000
    assert uvicorn["http"].endswith(":H11WithHeadLimits")
