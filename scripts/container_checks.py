"""The pieces of scripts/container_test.py that talk to podman and to a running container.

Expected answers come from this process: the same ONNX files, opened and fed by the service's
own code (`service.repository`, `service.preprocess`) on the CPU, and the truth labels of
the real test images in tests/fixtures.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from modelrepo.card import read_card
from modelrepo.providers import CPU
from service.preprocess import preprocess
from service.repository import ModelLoadError, load_model
from testkit.fixture_images import cifar_test, encode, mnist_test

REPO = Path(__file__).resolve().parent.parent

TEST_SETS = {"mnist": mnist_test, "cifar10": cifar_test}
IMAGES_PER_MODEL = 16
PROBABILITY_TOLERANCE = 1e-4  # same ONNX Runtime release, same CPU kernels: answers agree closely


class CheckFailed(Exception):
    """A check failed; the message names it and shows what was seen."""


def check(name: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise CheckFailed(f"{name}: {detail}")
    print(f"ok   {name}{': ' + detail if detail else ''}", flush=True)


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise CheckFailed(f"podman {' '.join(args[:3])} ... failed (exit {done.returncode}):\n{tail}")
    return done


def logs(container: str) -> str:
    done = podman("logs", container, check=False)
    return done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def wait_ready(url: str, container: str, timeout: float = 300) -> float:
    """Seconds until /health/ready answers 200; fails early if the container stops."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != "true":
            raise CheckFailed(f"{container} stopped before it was ready:\n{logs(container)[-3000:]}")
        time.sleep(1)
    raise CheckFailed(f"{container} not ready after {timeout:.0f} s:\n{logs(container)[-3000:]}")


def post_png(url: str, model: str, png: bytes) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", f"/predict/{model}", body=png, headers={"Content-Type": "image/png"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def prediction_checks(url: str, model: str, provider: str, name: str, repository: Path = REPO / "models") -> None:
    """Post real test images as PNG; every answer must equal this process's (the model's files
    in `repository`), and one image the model gets right here must come back with its true
    label. `name` prefixes the checks."""
    try:
        reference = load_model(repository / model, (CPU,))
    except ModelLoadError as err:
        raise CheckFailed(f"cannot load it in this process: {err}") from None
    images, truths = TEST_SETS[reference.card.dataset]()
    classes = reference.card.classes
    pngs = [encode(image) for image in images[:IMAGES_PER_MODEL]]
    expected = [reference.classify(preprocess(png, reference.spec, 10**8)[None])[0] for png in pngs]
    answers = [post_png(url, model, png) for png in pngs]
    bad = [(i, status, body) for i, (status, body) in enumerate(answers) if status != 200]
    check(f"{name}: PNG test images answered 200", not bad, f"{len(pngs) - len(bad)}/{len(pngs)}; failures: {bad[:3]}")
    labels = [body["label"] for _, body in answers]
    check(f"{name}: answers on {provider}", all(body["provider"] == provider for _, body in answers),
          f"providers: {sorted({body['provider'] for _, body in answers})}")
    same = [label == classes[int(np.argmax(p))] for label, p in zip(labels, expected)]
    drift = max(abs(body["probability"] - float(p.max())) for (_, body), p in zip(answers, expected))
    check(f"{name}: labels equal this process's ONNX Runtime", all(same) and drift < PROBABILITY_TOLERANCE,
          f"{sum(same)}/{len(same)} equal, largest probability difference {drift:.1e}")
    right = [i for i, p in enumerate(expected) if int(np.argmax(p)) == truths[i]]
    if not right:
        raise CheckFailed(f"{model}: gets none of the first {len(pngs)} test images right, even here")
    i = right[0]
    truth = classes[truths[i]]
    check(f"{name}: test image #{i} comes back with its true label", labels[i] == truth,
          f"true {truth!r} -> {labels[i]!r} (p={answers[i][1]['probability']:.4f}); "
          f"{sum(label == classes[t] for label, t in zip(labels, truths))}/{len(labels)} of the first "
          f"{len(labels)} right")


def stop_with_request_in_flight(url: str, model: str, container: str, stop: list[str]) -> tuple[dict, float]:
    """Send a request's headers and half its body, run `stop` (SIGTERM), wait until the server
    says it is shutting down, then send the rest: the answer must still come."""
    body = encode(TEST_SETS[read_card(REPO / "models" / model).dataset]()[0][0])
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest("POST", f"/predict/{model}")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[:len(body) // 2])
    time.sleep(1.0)  # the server has the headers: this request is in flight
    started = time.monotonic()
    stopper = subprocess.Popen(stop, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while "Shutting down" not in logs(container):
            if stopper.poll() is not None or time.monotonic() - started > 30:
                raise CheckFailed(f"{container}: no 'Shutting down' in its log after SIGTERM:\n"
                                  f"{logs(container)[-2000:]}")
            time.sleep(0.2)
        time.sleep(1.0)  # long enough that the server is seen waiting for this connection
        connection.send(body[len(body) // 2:])
        answer = connection.getresponse()
        result = {"status": answer.status, **json.loads(answer.read())}
    finally:
        connection.close()
        stopper.wait(120)
    return result, time.monotonic() - started
