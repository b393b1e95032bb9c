"""Issue 17's request-side attacks (branch hostile-http defends them), each over raw sockets
or httpx, each returning one line saying what the server did. bench/hostile.py runs them.

None checks an answer against a goal: they send, and report.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

MB = 1024 * 1024
FORGED = "2026-01-01 00:00:00,000 INFO service: forged log line"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _status(sock: socket.socket, timeout: float = 10.0) -> str:
    """The status code the server answers on `sock`, or what happened instead."""
    sock.settimeout(timeout)
    try:
        head = sock.recv(64)
    except TimeoutError:
        return f"no answer in {timeout:.0f} s"
    except OSError as err:
        return f"connection {type(err).__name__}"
    return head.split(b" ")[1].decode(errors="replace") if head.startswith(b"HTTP/") else (
        "closed without an answer" if not head else repr(head[:20]))


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed the connection, or answered on it (an error, then a close)."""
    sock.setblocking(False)
    try:
        sock.recv(1 << 16)  # b"": closed; bytes: an answer
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def held_connections(url: str, count: int, prefix: bytes, hold_s: float) -> str:
    """`count` connections that each send `prefix` (maybe nothing), then wait `hold_s`."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(_address(url), timeout=10)
            if prefix:
                sock.sendall(prefix)
            sockets.append(sock)
        time.sleep(hold_s)
        closed = sum(_closed(sock) for sock in sockets)
        return f"{count} opened, {closed} closed by the server within {hold_s:.0f} s"
    except OSError as err:
        return f"{len(sockets)} opened, then {type(err).__name__}: {err}"
    finally:
        for sock in sockets:
            sock.close()


def uploads_one_byte_short(url: str, count: int = 50, size: int = 10 * MB, hold_s: float = 5.0) -> str:
    """`count` uploads that send all but the last byte of a `size`-byte body, then wait."""
    sockets: list[socket.socket] = []
    failures: list[str] = []
    host, port = _address(url)  # an allowed Host: the body, not the guard, is what is tested
    head = (f"POST /predict/lenet5-cifar10 HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()

    def upload() -> None:
        try:
            sock = socket.create_connection(_address(url), timeout=60)
            sockets.append(sock)
            sock.sendall(head)
            chunk = b"\0" * MB
            for sent in range(0, size - 1, MB):
                sock.sendall(chunk[:min(MB, size - 1 - sent)])
        except OSError as err:
            failures.append(type(err).__name__)

    threads = [threading.Thread(target=upload) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(hold_s)
    closed = sum(_closed(sock) for sock in sockets)
    for sock in sockets:
        sock.close()
    failed = f", {len(failures)} cut off while sending ({failures[0]})" if failures else ""
    return f"{count} held {size - 1:,} bytes in{failed}; {closed} closed by the server within {hold_s:.0f} s"


def raw(url: str, request: bytes | Callable[[socket.socket], None], timeout: float = 30.0) -> str:
    """Send one raw request (bytes, or a function that writes it) and say how the server answered."""
    try:
        with socket.create_connection(_address(url), timeout=timeout) as sock:
            try:
                request(sock) if callable(request) else sock.sendall(request)
            except OSError as err:
                return f"cut off while sending ({type(err).__name__}); then {_status(sock, 2)}"
            return _status(sock, timeout)
    except OSError as err:
        return f"connection {type(err).__name__}"


def huge_header(url: str, size: int = 64 * MB) -> str:
    def send(sock: socket.socket) -> None:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(size // MB):
            sock.sendall(b"a" * MB)
        sock.sendall(b"\r\n\r\n")
    return raw(url, send)


def many_headers(url: str, count: int = 300_000) -> str:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return raw(url, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")


def get(url: str, path: str, headers: dict[str, str] | None = None) -> str:
    """GET `path` sent exactly as given (no client-side normalisation)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    host = "" if headers and "Host" in headers else "Host: 127.0.0.1\r\n"
    return raw(url, f"GET {path} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n".encode())


def post(url: str, path: str, **request: object) -> str:
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            response = http.post(path, **request)
            return f"{response.status_code} {response.text[:60]!r}"
    except httpx.HTTPError as err:
        return f"{type(err).__name__}"


def non_utf8_text_part(url: str, path: str, image: bytes) -> str:
    """A multipart text field (no filename) holding bytes that are not UTF-8, beside a file."""
    boundary = "hostile"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n".encode() + b"\xff\xfe\xc3\x28"
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
              f"Content-Type: image/png\r\n\r\n".encode() + image + f"\r\n--{boundary}--\r\n".encode())
    return post(url, path, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})


def many_parts(url: str, path: str, image: bytes, count: int = 1001) -> str:
    return post(url, path, files=[("files", (f"{i}.png", image, "image/png")) for i in range(count)])


def long_filename(url: str, path: str, image: bytes, length: int = 100_000) -> str:
    return post(url, path, files=[("files", ("a" * length + ".png", image, "image/png"))])


def cross_site_post(url: str, path: str, image: bytes) -> str:
    return post(url, path, files=[("file", ("a.png", image, "image/png"))],
                headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})


def forged_log_line(url: str, log: Callable[[], str]) -> str:
    """A path whose %0a would start a new, forged line if the server logged it unescaped."""
    status = get(url, "/static/%00%0a" + FORGED.replace(" ", "%20"))
    time.sleep(0.5)
    forged = any(line.startswith(FORGED) for line in log().splitlines())
    return f"{status}; forged line in the log: {'YES' if forged else 'no'}"
