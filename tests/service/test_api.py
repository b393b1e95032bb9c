"""The API's shapes, exactly as documented in the README, against a real server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from modelrepo.providers import CPU
from service import machine
from service.predict import top_classes
from service.preprocess import digit_field, preprocess
from service.repository import load_model
from testkit.fixture_images import cifar_test, encode, ink_on_paper, mnist_test

DIGITS, _ = mnist_test()
PNG = {"content-type": "image/png"}
PREDICTION_KEYS = {"model", "label", "index", "probability", "top_k", "provider", "timings_ms"}
SUMMARY_KEYS = {"id", "arch", "dataset", "classes", "preprocessing", "input_method", "precision", "test_accuracy",
                "provider", "status", "error", "max_batch"}


def predict(client: httpx.Client, data: bytes, model: str = "cnn-mnist", **params) -> dict:
    response = client.post(f"/predict/{model}", content=data, headers=PNG, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_predict_answers_in_the_documented_shape(client: httpx.Client) -> None:
    answer = predict(client, encode(DIGITS[0]))
    assert set(answer) == PREDICTION_KEYS
    assert answer["model"] == "cnn-mnist"
    assert answer["provider"] == "CPUExecutionProvider"
    assert len(answer["top_k"]) == 3  # the default
    assert set(answer["top_k"][0]) == {"label", "index", "probability"}
    assert answer["top_k"][0] == {"label": answer["label"], "index": answer["index"],
                                  "probability": answer["probability"]}
    assert answer["label"] == str(answer["index"])  # the MNIST classes are the digits
    probabilities = [entry["probability"] for entry in answer["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-9
    timings = answer["timings_ms"]
    assert set(timings) == {"decode", "queue", "inference", "total"}
    assert all(value >= 0 for value in timings.values())
    assert timings["total"] >= timings["decode"]


def test_the_answer_is_the_models_own_on_the_cards_preprocessing(client: httpx.Client, random_repo: Path) -> None:
    model = load_model(random_repo / "lenet5-cifar10", (CPU,))
    image = encode(cifar_test()[0][3])
    expected = top_classes(model.classify(preprocess(image, model.spec, 10**8)[None])[0], model.card.classes, 10)
    answer = predict(client, image, "lenet5-cifar10", top_k=10)
    assert [(e["label"], e["index"]) for e in answer["top_k"]] == [(e.label, e.index) for e in expected]
    assert [e["probability"] for e in answer["top_k"]] == [e.probability for e in expected]


def test_multipart_raw_png_and_jpeg_agree(client: httpx.Client) -> None:
    png = encode(DIGITS[1])
    by_raw = predict(client, png)
    by_form = client.post("/predict/cnn-mnist", files={"file": ("digit.png", png, "image/png")}).json()
    by_jpeg = client.post("/predict/cnn-mnist", content=encode(DIGITS[1], "JPEG", quality=100),
                          headers={"content-type": "image/jpeg"}).json()
    assert by_form["top_k"] == by_raw["top_k"]
    assert by_jpeg["label"] == by_raw["label"]


def test_top_k_asks_for_more_or_fewer_classes(client: httpx.Client) -> None:
    png = encode(DIGITS[2])
    assert len(predict(client, png, top_k=1)["top_k"]) == 1
    every_class = predict(client, png, top_k=1000)["top_k"]  # more than there are: all ten
    assert sorted(entry["index"] for entry in every_class) == list(range(10))
    assert sum(entry["probability"] for entry in every_class) == pytest.approx(1.0, abs=1e-9)


def test_batch_answers_each_image_in_order(client: httpx.Client) -> None:
    images = [encode(x) for x in DIGITS[:5]]
    response = client.post("/predict/cnn-mnist/batch", params={"top_k": 2},
                           files=[("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "results"} and body["model"] == "cnn-mnist"
    assert len(body["results"]) == 5
    for data, result in zip(images, body["results"]):
        assert set(result) == PREDICTION_KEYS
        assert result["top_k"] == predict(client, data, top_k=2)["top_k"]


def seen(answer: dict) -> np.ndarray:
    """The answer's `input_png`, decoded: what the model saw."""
    image = Image.open(io.BytesIO(base64.b64decode(answer["input_png"])))
    assert image.format == "PNG"
    return np.asarray(image)


def test_include_input_shows_the_digit_field_the_model_saw(client: httpx.Client) -> None:
    plain = predict(client, encode(DIGITS[4]))
    assert "input_png" not in plain, "only when asked for"
    answer = predict(client, encode(DIGITS[4]), include="input")
    assert set(answer) == PREDICTION_KEYS | {"input_png"}
    assert answer["top_k"] == plain["top_k"]
    # The 28x28 field after preprocessing, to the bit: normalisation undone exactly.
    assert np.array_equal(seen(answer), digit_field(DIGITS[4]))


def test_include_input_shows_a_page_as_the_model_saw_it(client: httpx.Client) -> None:
    # A digit written large on white paper, off-centre: the model sees it white on black,
    # cropped, scaled and centred.
    page = ink_on_paper(DIGITS[5], np.random.default_rng(0))
    field = seen(predict(client, encode(page), include="input"))
    assert field.shape == (28, 28) and field.dtype == np.uint8
    assert field[0].max() == field[-1].max() == 0 and field.max() == 255
    ys, xs = np.indices(field.shape)
    assert abs((ys * field).sum() / field.sum() - 14) <= 1 and abs((xs * field).sum() / field.sum() - 14) <= 1


def test_include_input_shows_the_photo_the_model_saw(client: httpx.Client) -> None:
    image = cifar_test()[0][6]
    answer = predict(client, encode(image), "lenet5-cifar10", include="input")
    assert np.array_equal(seen(answer), image), "a 32x32 photo reaches the model as it is"
    large = Image.fromarray(image).resize((200, 150), Image.Resampling.BICUBIC)
    assert seen(predict(client, encode(large), "lenet5-cifar10", include="input")).shape == (32, 32, 3)


def test_batch_include_input_gives_each_image_its_own(client: httpx.Client) -> None:
    files = [("files", ("a.png", encode(DIGITS[6]), "image/png")), ("files", ("b.txt", b"no image", "text/plain")),
             ("files", ("c.png", encode(DIGITS[7]), "image/png"))]
    response = client.post("/predict/cnn-mnist/batch", params={"include": "input"}, files=files)
    assert response.status_code == 200, response.text
    first, refused, last = response.json()["results"]
    assert np.array_equal(seen(first), digit_field(DIGITS[6]))
    assert np.array_equal(seen(last), digit_field(DIGITS[7]))
    assert set(refused) == {"error", "detail"}, "an image that was not read has nothing to show"


def test_models_lists_every_model_with_its_status(client: httpx.Client, random_repo: Path) -> None:
    listed = {m["id"]: m for m in client.get("/models").json()["models"]}
    assert set(listed) == {"cnn-mnist", "lenet5-cifar10"}
    for model_id, summary in listed.items():
        card = json.loads((random_repo / model_id / "card.json").read_text())
        assert set(summary) == SUMMARY_KEYS
        assert summary["status"] == "ready" and summary["error"] is None
        assert summary["provider"] == "CPUExecutionProvider"
        for key in ("arch", "dataset", "classes", "preprocessing", "test_accuracy", "precision"):
            assert summary[key] == card[key]
    # The page's panel for each: the drawing pad for digits, the upload for photos.
    assert (listed["cnn-mnist"]["input_method"], listed["lenet5-cifar10"]["input_method"]) == ("draw", "upload")


def test_models_says_how_the_server_runs(client: httpx.Client) -> None:
    server = client.get("/models").json()["server"]
    auto = machine.plan(None, 0)  # what this machine's defaults come to
    # The test server sets CNNZOO_WORKERS=1 (testkit/live_server.py) and leaves the rest to auto.
    assert server == {"workers": 1, "ort_threads": auto.cpus, "max_batch": auto.max_batch, "chosen_by": "CNNZOO_WORKERS"}
    assert server["max_batch"] == (machine.GPU_MAX_BATCH if auto.gpus else None)
    # Both test models are small (a batch of one well under 0.2 ms, even on a busy CPU): the
    # largest batches, whether chosen per model or for the GPU.
    models = client.get("/models").json()["models"]
    assert [m["max_batch"] for m in models] == [32, 32]


def test_a_models_card_comes_with_its_status(client: httpx.Client, random_repo: Path) -> None:
    answer = client.get("/models/lenet5-cifar10").json()
    card = json.loads((random_repo / "lenet5-cifar10" / "card.json").read_text())
    # Every key of the exporter's card comes back unchanged (a key the service does not know
    # would be dropped: this fails until schemas.Card learns it).
    assert {key: answer.get(key) for key in card} == card
    assert answer["status"] == "ready" and answer["provider"] == "CPUExecutionProvider" and answer["error"] is None
    missing = client.get("/models/alexnet-mnist")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_model"


def test_health(client: httpx.Client) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "ready": ["cnn-mnist", "lenet5-cifar10"], "loading": [],
                            "unavailable": {}}


def test_metrics_count_requests_per_model(client: httpx.Client) -> None:
    def samples(text: str) -> dict[tuple[str, frozenset], float]:
        """(sample name, labels) -> value, parsed as Prometheus itself parses the exposition."""
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    ok = ("cnnzoo_requests_total", frozenset({"endpoint": "predict", "model": "lenet5-cifar10", "status": "200"}.items()))
    before = samples(client.get("/metrics").text)
    predict(client, encode(Image.fromarray(cifar_test()[0][0])), "lenet5-cifar10")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    assert after[ok] == before.get(ok, 0.0) + 1
    names = {name for name, _ in after}
    assert {"cnnzoo_request_duration_seconds_bucket", "cnnzoo_inference_duration_seconds_bucket",
            "cnnzoo_batch_size_bucket", "cnnzoo_model_ready"} <= names
    assert after[("cnnzoo_model_ready", frozenset({"model": "lenet5-cifar10", "provider": "CPUExecutionProvider"}.items()))] == 1.0
    client.post("/predict/lenet5-cifar10", content=b"", headers={"Content-Type": "image/png"})
    errors = samples(client.get("/metrics").text)
    assert errors[("cnnzoo_errors_total", frozenset({"model": "lenet5-cifar10", "error": "empty_body"}.items()))] >= 1


def test_openapi_shows_the_shapes(client: httpx.Client) -> None:
    schema = client.get("/schema/openapi.json").json()
    components = schema["components"]["schemas"]
    assert set(components["Prediction"]["properties"]) == PREDICTION_KEYS | {"input_png"}
    assert set(components["Prediction"]["required"]) == PREDICTION_KEYS
    include = next(p for p in schema["paths"]["/predict/{model}"]["post"]["parameters"] if p["name"] == "include")
    assert "input_png" in include["description"]
    assert set(components["ErrorBody"]["properties"]) == {"error", "detail"}
    assert set(components["ModelSummary"]["properties"]) == SUMMARY_KEYS
    upload = schema["paths"]["/predict/{model}"]["post"]
    assert set(upload["requestBody"]["content"]) == {"image/*", "multipart/form-data"}
    assert {"200", "404", "413", "415", "422"} <= set(upload["responses"])
    assert "multipart/form-data" in schema["paths"]["/predict/{model}/batch"]["post"]["requestBody"]["content"]
    assert client.get("/schema").status_code == 200


def test_the_service_never_imports_torch() -> None:
    import subprocess
    import sys

    probe = ("import sys, service.app, service.__main__; "
             "from service.app import create_app; create_app(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent.parent)
    assert out.stdout.strip() == "[]"
