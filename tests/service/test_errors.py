"""Section 4 of the issue, against a real server: every client mistake gets its status and a
JSON `{"error", "detail"}`, none gets a 500, and the server answers normally afterwards.

The shared server runs with CNNZOO_MAX_UPLOAD_BYTES=1000000, CNNZOO_MAX_IMAGE_PIXELS=4000000
and CNNZOO_MAX_BATCH_IMAGES=8 (see conftest.py).
"""

from __future__ import annotations

import os
import time

import httpx
import pytest
from testkit.fixture_images import encode, mnist_test
from testkit.hostile import mutate
from PIL import Image

DIGIT = encode(mnist_test()[0][0])  # a real MNIST "7" as PNG
PHOTO_JPEG = encode(Image.fromarray(mnist_test()[0][1]).resize((300, 300)).convert("RGB"), "JPEG")
PNG = {"content-type": "image/png"}


def raw(path: str, body: bytes, headers: dict | None = None, method: str = "POST") -> dict:
    return {"method": method, "url": path, "content": body, "headers": PNG if headers is None else headers}


def multipart(path: str, files: list) -> dict:
    return {"method": "POST", "url": path, "files": files}


def form(*parts: bytes) -> dict:
    """A hand-made multipart body (boundary `xx`), for parts no client library would send."""
    body = b"".join(b"--xx\r\n" + part + b"\r\n" for part in parts) + b"--xx--\r\n"
    return raw("/predict/cnn-mnist", body, {"content-type": "multipart/form-data; boundary=xx"})


def on_batch(request: dict) -> dict:
    return {**request, "url": request["url"] + "/batch"}


NOT_UTF8_FIELD = b'Content-Disposition: form-data; name="note"\r\n\r\n\xff\xfe not UTF-8'
LONG_FILENAME = b'Content-Disposition: form-data; name="file"; filename="' + b"a" * 100_000 + b'"\r\n\r\nx'
MANY_HEADER_LINES = b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n' + \
    b"".join(b"X-%d: a\r\n" % i for i in range(20)) + b"\r\nx"


def chunks(total: int):
    """A body without Content-Length (chunked), so the limit must be enforced while streaming."""
    for _ in range(total // 65536):
        yield os.urandom(65536)


CASES = {
    "unknown model": (raw("/predict/resnet99-mnist", DIGIT), 404, "unknown_model",
                      "available: cnn-mnist, lenet5-cifar10"),
    "empty raw body": (raw("/predict/cnn-mnist", b""), 400, "empty_body", "empty"),
    "empty body, no content type": (raw("/predict/cnn-mnist", b"", headers={}), 400, "empty_body", "empty"),
    "empty multipart file": (multipart("/predict/cnn-mnist", [("file", ("a.png", b"", "image/png"))]),
                             400, "empty_body", "0 bytes"),
    "multipart without 'file'": (multipart("/predict/cnn-mnist", [("image", ("a.png", DIGIT, "image/png"))]),
                                 400, "missing_file", "'file'"),
    "not an image": (raw("/predict/cnn-mnist", b"hello, I am text pretending to be a PNG"),
                     415, "unsupported_image", "not an image"),
    # Shorter than some Pillow plugins' own checks read (DIB's: 4 bytes): was a 500.
    **{f"a {n}-byte body": (raw("/predict/cnn-mnist", b"xy!"[:n]), 415, "unsupported_image", "not an image")
       for n in (1, 2, 3)},
    "SVG is not a raster format": (raw("/predict/cnn-mnist", b'<svg xmlns="http://www.w3.org/2000/svg"/>',
                                       {"content-type": "image/svg+xml"}), 415, "unsupported_image", "not an image"),
    "JSON content type": (raw("/predict/cnn-mnist", b'{"image": "..."}', {"content-type": "application/json"}),
                          415, "unsupported_media_type", "application/json"),
    "truncated PNG": (raw("/predict/cnn-mnist", DIGIT[:len(DIGIT) // 2]), 422, "corrupt_image", "truncated"),
    "truncated JPEG": (raw("/predict/cnn-mnist", PHOTO_JPEG[:len(PHOTO_JPEG) // 2], {"content-type": "image/jpeg"}),
                       422, "corrupt_image", "truncated"),
    "body over the limit": (raw("/predict/cnn-mnist", os.urandom(1_500_000)), 413, "payload_too_large",
                            "CNNZOO_MAX_UPLOAD_BYTES"),
    "chunked body over the limit": (raw("/predict/cnn-mnist", chunks(1_600_000)), 413, "payload_too_large",
                                    "CNNZOO_MAX_UPLOAD_BYTES"),
    "multipart over the limit": (multipart("/predict/cnn-mnist", [("file", ("a.png", os.urandom(1_500_000)))]),
                                 413, "payload_too_large", "CNNZOO_MAX_UPLOAD_BYTES"),
    "decompression bomb": (raw("/predict/cnn-mnist", encode(Image.new("1", (12_000, 12_000)))), 413,
                           "too_many_pixels", "the limit is 4,000,000"),
    "wrong method": (raw("/predict/cnn-mnist", b"", method="GET"), 405, "method_not_allowed", "allowed: POST"),
    "wrong method on /models": (raw("/models", b"", method="DELETE"), 405, "method_not_allowed", "allowed: GET"),
    "unknown route": (raw("/predict", DIGIT), 404, "not_found", "/schema"),
    "top_k of 0": (raw("/predict/cnn-mnist?top_k=0", DIGIT), 400, "bad_request", "top_k"),
    "top_k not a number": (raw("/predict/cnn-mnist?top_k=three", DIGIT), 400, "bad_request", "top_k"),
    "unknown include": (raw("/predict/cnn-mnist?include=everything", DIGIT), 400, "bad_request",
                        "include='everything' is not known; known: input"),
    "unknown include on a batch": (multipart("/predict/cnn-mnist/batch?include=input,pixels",
                                             [("files", ("a.png", DIGIT))]), 400, "bad_request", "'pixels'"),
    "malformed multipart": (raw("/predict/cnn-mnist", b"--xyz\r\nnot a part header\r\n\r\n",
                                {"content-type": "multipart/form-data; boundary=xyz"}), 400, "bad_request", "Invalid multipart"),
    "multipart without boundary": (raw("/predict/cnn-mnist", DIGIT, {"content-type": "multipart/form-data"}),
                                   400, "bad_request", "boundary"),
    # Issue 17: hostile forms and file names, each a 4xx, never a 500.
    "a text field that is not UTF-8": (form(NOT_UTF8_FIELD), 400, "bad_request", "not UTF-8"),
    "a text field that is not UTF-8, on a batch": (on_batch(form(NOT_UTF8_FIELD)), 400, "bad_request", "not UTF-8"),
    "more parts than the parser takes": (form(*[b'Content-Disposition: form-data; name="n"\r\n\r\nv'] * 200), 413,
                                         "payload_too_large", "more than 40 parts"),
    "a 100 KB filename": (form(LONG_FILENAME), 413, "payload_too_large", "header is longer than"),
    "a part with 20 header lines": (form(MANY_HEADER_LINES), 413, "payload_too_large", "header lines"),
    "a NUL byte in a static path": (raw("/static/%00", b"", {}, "GET"), 404, "not_found", "no file"),
    "a 300-character static name": (raw("/static/" + "a" * 300, b"", {}, "GET"), 404, "not_found", "no file"),
    "a static path out of its folder": (raw("/static/..%2fsettings.py", b"", {}, "GET"), 404, "not_found", ""),
    "batch of too many images": (multipart("/predict/cnn-mnist/batch", [("files", ("a.png", DIGIT))] * 9),
                                 413, "too_many_images", "limit is 8"),
    "batch as a raw body": (raw("/predict/cnn-mnist/batch", DIGIT), 415, "unsupported_media_type", "multipart"),
    "batch without files": (multipart("/predict/cnn-mnist/batch", [("note", (None, "hello"))]), 400,
                            "missing_file", "no file parts"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_client_mistakes_get_a_clear_json_error(client: httpx.Client, case: str) -> None:
    request, status, code, detail = CASES[case]
    response = client.request(**request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert detail in body["detail"]
    # ...and the server goes on answering.
    after = client.post("/predict/cnn-mnist", content=DIGIT, headers=PNG)
    assert after.status_code == 200 and after.json()["model"] == "cnn-mnist"


def test_a_bad_image_in_a_batch_gets_its_own_error_and_the_rest_are_answered(client: httpx.Client) -> None:
    files = [("files", ("a.png", DIGIT, "image/png")), ("files", ("b.txt", b"not an image", "text/plain")),
             ("files", ("c.png", DIGIT[:100], "image/png")), ("files", ("d.jpg", PHOTO_JPEG, "image/jpeg"))]
    response = client.post("/predict/cnn-mnist/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("error") for r in results] == [None, "unsupported_image", "corrupt_image", None]
    assert set(results[1]) == {"error", "detail"}
    assert results[0]["label"] == client.post("/predict/cnn-mnist", content=DIGIT, headers=PNG).json()["label"]


def test_no_client_mistake_produced_a_server_error(server, client: httpx.Client) -> None:
    for case in ("not an image", "truncated PNG", "decompression bomb", "malformed multipart",
                 "a text field that is not UTF-8", "a text field that is not UTF-8, on a batch",
                 "a NUL byte in a static path", "a 300-character static name", "a 100 KB filename"):
        request = CASES[case][0]
        assert client.request(**request).status_code < 500
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics and 'error="internal_error"' not in metrics
    assert "Traceback" not in server.log()
    assert server.process.poll() is None


def test_mangled_images_never_cause_a_server_error(server, client: httpx.Client) -> None:
    """Real images of every common format, truncated, bit-flipped or spliced at random."""
    digit = Image.fromarray(mnist_test()[0][3])
    originals = [encode(image, fmt) for image in (digit, digit.resize((300, 300)).convert("RGB"))
                 for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    statuses = []
    for data in mutate(originals, 240, seed=1):
        response = client.post("/predict/cnn-mnist", content=data, headers=PNG)
        assert response.status_code < 500, response.text
        assert set(response.json()) in ({"error", "detail"}, {"model", "label", "index", "probability", "top_k",
                                                              "provider", "timings_ms"})
        statuses.append(response.status_code)
    assert {200, 415, 422} <= set(statuses)  # some survive, some are refused, each way
    assert server.process.poll() is None


def test_a_client_hanging_up_mid_upload_is_not_a_server_error(server, client: httpx.Client) -> None:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    for path, content_type in (("/predict/cnn-mnist", "image/png"),
                               ("/predict/cnn-mnist/batch", "multipart/form-data; boundary=x")):
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + DIGIT)
    time.sleep(1)  # the server notices the hang-up while it reads the body
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics and "Traceback" not in server.log()
    assert client.post("/predict/cnn-mnist", content=DIGIT, headers=PNG).status_code == 200
