"""The hot path (service/raw_predict.py): a raw image POSTed to /predict/<model> is answered
before Litestar's router, with Litestar's answers; every other request goes on to Litestar.

Two real apps on the same random-weight models, one with CNNZOO_HOT_PATH off, get the same
requests in-process (ASGI, no sockets: the server-level behaviour is the other tests' business,
and they run through the hot path too); their answers must be equal, and the router of the app
with the hot path must not have seen the requests the hot path takes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from testkit.fixture_images import encode, mnist_test

from modelrepo.providers import CPU
from service import raw_predict
from service.app import create_app
from service.settings import Settings

DIGIT = encode(mnist_test()[0][0])
LIMIT = 200_000
Receive = Callable[[], object]


def scope(path: str = "/predict/cnn-mnist", query: bytes = b"", method: str = "POST",
          headers: dict[str, str] | None = None) -> dict:
    headers = {"host": "127.0.0.1:8000", "content-type": "image/png"} if headers is None else headers
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}


def body_of(*chunks: bytes, then_disconnect: bool = False, stall_s: float = 0.0) -> Callable[[], Receive]:
    """A receive callable per request: the chunks (more_body on all but the last), or a hang-up."""
    def make() -> Receive:
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or then_disconnect}
                    for i, c in enumerate(chunks)]
        if then_disconnect:
            messages.append({"type": "http.disconnect"})

        async def receive() -> dict:
            if stall_s:
                await asyncio.sleep(stall_s)
            return messages.pop(0) if messages else {"type": "http.disconnect"}
        return receive
    return make


def png_headers(**extra: str) -> dict[str, str]:
    return {"host": "127.0.0.1:8000", "content-type": "image/png", **extra}


# name: (scope, receive, taken by the hot path)
CASES = {
    "a digit": (scope(), body_of(DIGIT), True),
    "top_k and include": (scope(query=b"top_k=5&include=input"), body_of(DIGIT), True),
    "top_k larger than the classes": (scope(query=b"top_k=50"), body_of(DIGIT), True),
    "octet-stream": (scope(headers={"host": "localhost", "content-type": "application/octet-stream"}),
                     body_of(DIGIT), True),
    "Content-Type with parameters": (scope(headers=png_headers(**{"content-type": "Image/PNG; q=1"})),
                                     body_of(DIGIT), True),
    "the body in chunks": (scope(), body_of(DIGIT[:10], DIGIT[10:50], DIGIT[50:]), True),
    "unknown model": (scope("/predict/resnet99-mnist"), body_of(DIGIT), True),
    "empty body": (scope(), body_of(b""), True),
    "two bytes": (scope(), body_of(b"xy"), True),
    "not an image": (scope(), body_of(b"hello, I am text pretending to be a PNG"), True),
    "a truncated PNG": (scope(), body_of(DIGIT[:100]), True),
    "include something unknown": (scope(query=b"include=everything"), body_of(DIGIT), True),
    "over the limit, announced": (scope(headers=png_headers(**{"content-length": str(LIMIT + 1)})),
                                  body_of(b"\0" * (LIMIT + 1)), True),
    "over the limit, in chunks": (scope(), body_of(*[b"\0" * 50_000] * 5), True),
    "a client that hangs up": (scope(), body_of(DIGIT[:20], then_disconnect=True), True),
    "a body slower than the deadline": (scope(), body_of(DIGIT, stall_s=0.5), True),
    "unknown host": (scope(headers=png_headers(host="evil.example")), body_of(DIGIT), True),
    "cross-site": (scope(headers=png_headers(**{"sec-fetch-site": "cross-site", "origin": "https://evil.example"})),
                   body_of(DIGIT), True),
    # ...and what goes on to Litestar:
    "top_k=0": (scope(query=b"top_k=0"), body_of(DIGIT), False),
    "top_k not a number": (scope(query=b"top_k=three"), body_of(DIGIT), False),
    "an escaped parameter": (scope(query=b"top_k=%32"), body_of(DIGIT), False),
    "an unknown parameter": (scope(query=b"top=2"), body_of(DIGIT), False),
    "a parameter twice": (scope(query=b"top_k=2&top_k=3"), body_of(DIGIT), False),
    "a bad Content-Length": (scope(headers=png_headers(**{"content-length": "many"})), body_of(DIGIT), False),
    "a trailing slash": (scope("/predict/cnn-mnist/"), body_of(DIGIT), False),
    "the batch route": (scope("/predict/cnn-mnist/batch"), body_of(DIGIT), False),
    "text/plain": (scope(headers=png_headers(**{"content-type": "text/plain"})), body_of(DIGIT), False),
    "no Content-Type": (scope(headers={"host": "localhost"}), body_of(DIGIT), False),
    "GET": (scope(method="GET"), body_of(b""), False),
}


@pytest.fixture(scope="module")
def answers(random_repo: Path) -> dict[str, dict[str, tuple]]:
    """Each case's (status, headers, JSON) from the app with the hot path and from the one without,
    and whether the first one's router saw it."""
    async def run() -> dict[str, dict[str, tuple]]:
        out: dict[str, dict[str, tuple]] = {}
        for name, hot in (("hot path", True), ("litestar", False)):
            app = create_app(Settings(model_repository=random_repo, providers=(CPU,), grpc_port=0, hot_path=hot,
                                      max_upload_bytes=LIMIT, body_read_timeout_s=0.2))
            routed = []
            router = app.asgi_handler

            async def seen_by_router(scope, receive, send, router=router, routed=routed):
                routed.append(scope["path"])
                await router(scope, receive, send)
            app.asgi_handler = seen_by_router
            async with app.lifespan():
                while app.state.service.catalog.readiness().status == "loading":
                    await asyncio.sleep(0.02)
                for case, (request, receive, _) in CASES.items():
                    sent: list[dict] = []

                    async def send(message: dict) -> None:
                        sent.append(message)
                    routed.clear()
                    await app(dict(request), receive(), send)
                    headers = dict(sent[0]["headers"])
                    body = b"".join(m.get("body", b"") for m in sent[1:])
                    out.setdefault(case, {})[name] = (sent[0]["status"], headers, json.loads(body) if body else None,
                                                      bool(routed))
        return out
    return asyncio.run(run())


def without_timings(answer: dict | None) -> dict | None:
    return {k: v for k, v in answer.items() if k != "timings_ms"} if isinstance(answer, dict) else answer


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_hot_path_answers_as_litestar_does(answers: dict, case: str) -> None:
    hot_status, hot_headers, hot_json, _ = answers[case]["hot path"]
    status, headers, body, routed = answers[case]["litestar"]
    assert routed, "the app without the hot path answered through its router"
    assert hot_status == status, (hot_json, body)
    assert without_timings(hot_json) == without_timings(body)
    # The same headers; the length differs only with the timings' digits.
    assert {k: v for k, v in hot_headers.items() if k != b"content-length"} == \
           {k: v for k, v in headers.items() if k != b"content-length"}
    assert hot_headers[b"content-type"] == b"application/json"


def test_the_cases_cover_answers_and_refusals(answers: dict) -> None:
    statuses = {answers[case]["litestar"][0] for case in CASES}
    assert {200, 400, 403, 404, 408, 413, 415, 422} <= statuses, statuses
    assert answers["a body slower than the deadline"]["hot path"][1][b"connection"] == b"close"
    assert answers["top_k and include"]["hot path"][2]["input_png"]
    assert len(answers["top_k and include"]["hot path"][2]["top_k"]) == 5


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_hot_path_takes_the_common_case_and_leaves_the_rest_to_litestar(answers: dict, case: str) -> None:
    taken = CASES[case][2]
    assert answers[case]["hot path"][3] is (not taken)
    assert (raw_predict.taken(CASES[case][0]) is not None) is taken



def test_what_the_hot_path_reads_from_a_request() -> None:
    request = raw_predict.taken(scope(query=b"include=input&top_k=7",
                                      headers=png_headers(**{"content-length": "1234", "Origin": "http://localhost"})))
    assert (request.model, request.top_k, request.include, request.content_length) == ("cnn-mnist", 7, "input", 1234)
    assert request.headers["origin"] == "http://localhost" and request.headers["host"] == "127.0.0.1:8000"
    assert raw_predict.taken(scope()).top_k == 3  # the route's default
