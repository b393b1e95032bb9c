"""The Open Inference Protocol over HTTP, through Triton's and KServe's own clients.

Against a real server on the starter models (real weights, so labels are checked against the
truth): tritonclient.http with binary and JSON tensors, BYTES images, classification; KServe's
InferenceRESTClient; the same tensor through v2 and /predict. The error cases run on the shared
random-weight server, whose small limits make them cheap to hit.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from testkit.fixture_images import encode, mnist_test
from google.protobuf import json_format, text_format
from testkit.kserve_sdk import kserve
from PIL import Image
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException
from v2_data import accuracy, predict_probabilities, real_images

from kserve.protocol.infer_type import RequestedOutput  # after testkit.kserve_sdk's import
from service.v2.rest import HEADER_LENGTH

MNIST, CIFAR = "cnn-mnist", "nin-cifar10"
MIN_DIGIT_ACCURACY = 0.97


@pytest.fixture(scope="module")
def triton(v2_server) -> triton_http.InferenceServerClient:
    client = triton_http.InferenceServerClient(v2_server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits(starter_repo):
    return real_images(starter_repo / MNIST, 64)


@pytest.fixture(scope="module")
def photos(starter_repo):
    return real_images(starter_repo / CIFAR, 64)


def image_input(tensor: np.ndarray, binary: bool = True) -> triton_http.InferInput:
    tensor_input = triton_http.InferInput("image", list(tensor.shape), "FP32")
    tensor_input.set_data_from_numpy(tensor, binary_data=binary)
    return tensor_input


def bytes_input(pngs: list[bytes]) -> triton_http.InferInput:
    tensor_input = triton_http.InferInput("image_bytes", [len(pngs)], "BYTES")
    tensor_input.set_data_from_numpy(np.array(pngs, dtype=object))
    return tensor_input


def test_health_and_server_metadata(triton, v2_server) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(MNIST) and not triton.is_model_ready("no-such-model")
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "cnnzoo"
    assert set(metadata["extensions"]) >= {"binary_tensor_data", "classification", "model_configuration"}
    # The exact bodies KServe's client reads.
    assert httpx.get(f"{v2_server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{v2_server.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{v2_server.url}/v2/models/{MNIST}/ready").json() == {"name": MNIST, "ready": True}


@pytest.mark.parametrize("model", [MNIST, CIFAR])
def test_model_metadata_describes_the_served_tensors(triton, starter_repo, model: str) -> None:
    card = real_images(starter_repo / model, 1).model.card
    metadata = triton.get_model_metadata(model)
    assert metadata["name"] == model and metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, *card.input.shape]}]
    assert metadata["outputs"] == [{"name": name, "datatype": "FP32", "shape": [-1, len(card.classes)]}
                                   for name in ("logits", "probabilities")]
    assert triton.get_model_metadata(model, model_version="1") == metadata


@pytest.mark.parametrize("model", [MNIST, CIFAR])
def test_model_config_is_the_folders_config_pbtxt(triton, starter_repo, model: str) -> None:
    config = triton.get_model_config(model)
    on_disk = text_format.Parse((starter_repo / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert json_format.ParseDict(config, model_config_pb2.ModelConfig()) == on_disk  # with Triton's own schema
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == list(on_disk.input[0].dims)  # numbers


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_tensors_get_the_models_answers_and_the_true_labels(triton, digits, binary: bool) -> None:
    outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in ("logits", "probabilities")]
    result = triton.infer(MNIST, [image_input(digits.tensor, binary)], outputs=outputs, request_id="digits-1")
    assert result.get_response()["id"] == "digits-1"
    assert result.get_response()["model_name"] == MNIST and result.get_response()["model_version"] == "1"
    logits, probabilities = result.as_numpy("logits"), result.as_numpy("probabilities")
    assert logits.dtype == probabilities.dtype == np.float32 and logits.shape == (64, 10)
    # Not close: equal. Each row is ONNX Runtime's answer for that image, whatever it was batched with.
    assert np.array_equal(logits, digits.expected_logits())
    assert accuracy(probabilities, digits.labels) >= MIN_DIGIT_ACCURACY
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)


def test_cifar_photos_as_tensors_and_as_bytes_get_the_same_true_labels(triton, photos) -> None:
    by_tensor = triton.infer(CIFAR, [image_input(photos.tensor)]).as_numpy("probabilities")
    by_bytes = triton.infer(CIFAR, [bytes_input(photos.pngs)]).as_numpy("probabilities")
    assert np.array_equal(by_tensor, by_bytes)
    assert accuracy(by_bytes, photos.labels) >= photos.model.card.test_accuracy - 0.1


def test_the_same_image_through_v2_and_predict_gives_equal_probabilities(triton, v2_server, digits) -> None:
    by_bytes = triton.infer(MNIST, [bytes_input(digits.pngs[:8])]).as_numpy("probabilities")
    by_tensor = triton.infer(MNIST, [image_input(digits.tensor[:8])]).as_numpy("probabilities")
    by_predict = np.stack([predict_probabilities(v2_server.url, MNIST, png) for png in digits.pngs[:8]])
    # /predict reports float64; v2's FP32 is the same number rounded once.
    assert np.array_equal(by_bytes, by_predict.astype(np.float32))
    assert np.array_equal(by_tensor, by_bytes)


def test_batched_answers_equal_unbatched_ones(triton, digits) -> None:
    together = triton.infer(MNIST, [image_input(digits.tensor[:16])]).as_numpy("logits")
    alone = np.concatenate([triton.infer(MNIST, [image_input(x[None])]).as_numpy("logits")
                            for x in digits.tensor[:16]])
    assert np.array_equal(together, alone)


@pytest.mark.parametrize("output", ["probabilities", "logits"])
def test_classification_gives_the_best_classes_as_value_index_label(triton, digits, output: str) -> None:
    scores = triton.infer(MNIST, [image_input(digits.tensor[:4])]).as_numpy(output)
    ranked = triton.infer(MNIST, [image_input(digits.tensor[:4])],
                          outputs=[triton_http.InferRequestedOutput(output, class_count=3)]).as_numpy(output)
    assert ranked.shape == (4, 3)
    for row, entries in zip(scores, ranked):
        parsed = [entry.decode().split(":") for entry in entries]
        assert [int(index) for _, index, _ in parsed] == list(np.argsort(-row)[:3])
        assert [label for _, _, label in parsed] == [digits.classes[int(index)] for _, index, _ in parsed]
        assert [float(value) for value, _, _ in parsed] == pytest.approx([row[int(i)] for _, i, _ in parsed], abs=1e-6)
    every = triton.infer(MNIST, [image_input(digits.tensor[:1])],
                         outputs=[triton_http.InferRequestedOutput(output, class_count=50)]).as_numpy(output)
    assert every.shape == (1, 10)  # more than there are: all of them, as /predict's top_k


def test_kserve_rest_client_gets_the_same_answers(v2_server, digits) -> None:
    base = v2_server.url

    async def run() -> tuple:
        client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", retries=0))
        try:
            health = (await client.is_server_live(base), await client.is_server_ready(base),
                      await client.is_model_ready(base, MNIST))
            answers = []
            for binary in (False, True):
                tensor_input = kserve.InferInput("image", list(digits.tensor.shape), "FP32")
                tensor_input.set_data_from_numpy(digits.tensor, binary_data=binary)
                request = kserve.InferRequest(MNIST, [tensor_input], request_id=f"kserve-{binary}")
                answers.append(await client.infer(base, request, model_name=MNIST))
            images = kserve.InferInput("image_bytes", [8], "BYTES")
            images.set_data_from_numpy(np.array(digits.pngs[:8], dtype=object), binary_data=True)
            request = kserve.InferRequest(MNIST, [images], request_outputs=[
                RequestedOutput("probabilities", parameters={"binary_data": True})])
            answers.append(await client.infer(base, request, model_name=MNIST))
            with pytest.raises(httpx.HTTPStatusError, match="no model 'nope'"):
                await client.infer(base, request, model_name="nope")
            return health, answers
        finally:
            await client.close()

    health, (as_json, as_binary, as_bytes) = asyncio.run(run())
    assert health == (True, True, True)
    assert as_json.id == "kserve-False" and as_binary.id == "kserve-True"
    logits = as_json.get_output_by_name("logits").as_numpy()
    assert np.array_equal(np.asarray(logits, np.float32), digits.expected_logits())
    assert np.array_equal(as_binary.get_output_by_name("logits").as_numpy(), digits.expected_logits())
    assert accuracy(as_binary.get_output_by_name("probabilities").as_numpy(), digits.labels) >= MIN_DIGIT_ACCURACY
    assert [o.name for o in as_bytes.outputs] == ["probabilities"]
    assert np.array_equal(as_bytes.outputs[0].as_numpy().argmax(1),
                          as_binary.get_output_by_name("probabilities").as_numpy()[:8].argmax(1))


def test_a_versioned_path_serves_version_1_only(v2_server, digits) -> None:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                        "data": digits.tensor[0].ravel().tolist()}]}
    ok = httpx.post(f"{v2_server.url}/v2/models/{MNIST}/versions/1/infer", json=body)
    assert ok.status_code == 200 and ok.json()["model_version"] == "1"
    missing = httpx.post(f"{v2_server.url}/v2/models/{MNIST}/versions/2/infer", json=body)
    assert missing.status_code == 404 and "no version '2'" in missing.json()["error"]


@pytest.mark.parametrize("route", ["", "/ready", "/config"])
def test_every_versioned_route_knows_version_1_only(v2_server, route: str) -> None:
    model = f"{v2_server.url}/v2/models/{MNIST}"
    assert httpx.get(f"{model}/versions/1{route}").status_code == 200
    missing = httpx.get(f"{model}/versions/2{route}")
    assert missing.status_code == 404 and "no version '2'" in missing.json()["error"]
    # the version is the path's: a query parameter of that name is not read as one
    assert httpx.get(f"{model}{route}", params={"version": "2"}).status_code == 200


# ---- errors: on the shared random-weight server (upload 1 MB, 4 Mpx, 8 images per request) ------------

DIGIT = mnist_test()[0][0]
ZEROS = np.zeros((1, 1, 28, 28), np.float32)


def infer_json(inputs: list[dict], **extra) -> dict:
    return {"url": "/v2/models/cnn-mnist/infer", "method": "POST", "content": json.dumps({"inputs": inputs, **extra})}


def infer_binary(header: dict, data: bytes, length: int | str | None = None) -> dict:
    head = json.dumps(header).encode()
    headers = {HEADER_LENGTH: str(len(head) if length is None else length)}
    return {"url": "/v2/models/cnn-mnist/infer", "method": "POST", "content": head + data, "headers": headers}


def image(shape=(1, 1, 28, 28), datatype="FP32", data: object = "zeros", **more) -> dict:
    """An `image` input; data "zeros" fills the shape, None leaves data out (binary data instead)."""
    tensor = {"name": "image", "datatype": datatype, "shape": list(shape), **more}
    if data is not None:
        tensor["data"] = np.zeros(shape).ravel().tolist() if data == "zeros" else data
    return tensor


def png_bytes(*images: bytes) -> dict:
    return {"name": "image_bytes", "datatype": "BYTES", "shape": [len(images)], "parameters":
            {"binary_data_size": sum(4 + len(i) for i in images)}}


def serialized(*images: bytes) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in images)


CASES = {
    "unknown model": ({**infer_json([image()]), "url": "/v2/models/nope/infer"}, 404, "no model 'nope'"),
    "unknown version": ({**infer_json([image()]), "url": "/v2/models/cnn-mnist/versions/7/infer"}, 404, "version"),
    "metadata of an unknown model": ({"url": "/v2/models/nope", "method": "GET"}, 404, "available: cnn-mnist"),
    "wrong shape": (infer_json([image((1, 3, 28, 28))]), 400, "takes FP32 [N, 1, 28, 28]"),
    "no batch axis": (infer_json([image((1, 28, 28))]), 400, "takes FP32 [N, 1, 28, 28]"),
    "wrong datatype": (infer_json([image(datatype="FP64")]), 400, "datatype 'FP64' is not supported"),
    "BYTES for the image tensor": (infer_json([image(datatype="BYTES", data=["x"] * 784)]), 400, "takes FP32"),
    "too few elements": (infer_json([image(data=[0.0] * 783)]), 400, "783 elements"),
    "strings as FP32 data": (infer_json([image(data=["0"] * 784)]), 400, "numbers only"),
    "ragged nested data": (infer_json([image(data=[[0.0] * 392, [0.0] * 391])]), 400, "regular nested list"),
    "infinity": ({**infer_json([image(data=[0.0] * 783)]), "content": json.dumps({"inputs": [image(data=[0.0] * 783)]})
                  .replace("0.0]", "1e999]")}, 400, "Number out of range"),
    "no input": (infer_json([]), 400, "exactly one input"),
    "both inputs": (infer_json([image(), {"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                          "data": ["x"]}]), 400, "exactly one input"),
    "unknown input": (infer_json([{**image(), "name": "pixels"}]), 400, "exactly one input"),
    "unknown output": (infer_json([image()], outputs=[{"name": "softmax"}]), 400, "no output 'softmax'"),
    "classification not a number": (infer_json([image()], outputs=[{"name": "logits", "parameters":
                                    {"classification": "3"}}]), 400, "'classification' must be"),
    "not JSON": ({"url": "/v2/models/cnn-mnist/infer", "method": "POST", "content": b"{inputs"}, 400, "not valid JSON"),
    "JSON without inputs": ({"url": "/v2/models/cnn-mnist/infer", "method": "POST", "content": b"{}"}, 400,
                            "missing required field `inputs`"),
    "negative dimension": (infer_json([image(data=[], shape=[1, 1, 28, -28])]), 400, "`$.inputs[0].shape[3]`"),
    "binary_data_size short of the shape": (infer_binary({"inputs": [image(data=None, parameters={
        "binary_data_size": 3000})] }, b"\0" * 3000), 400, "3000 bytes of data"),
    "binary_data_size past the body": (infer_binary({"inputs": [image(data=None, parameters={
        "binary_data_size": 3136})]}, b"\0" * 100), 400, "runs past the end"),
    "bytes left over": (infer_binary({"inputs": [image(data=None, parameters={"binary_data_size": 3136})]},
                                     ZEROS.tobytes() + b"extra"), 400, "5 bytes of binary data follow"),
    "header length past the body": (infer_binary({"inputs": [image()]}, b"", length=10**6), 400,
                                    "says 1000000 bytes of JSON"),
    "header length not a number": (infer_binary({"inputs": [image()]}, b"", length="ten"), 400, "whole number"),
    "data and binary_data_size": (infer_binary({"inputs": [image(parameters={"binary_data_size": 3136})]},
                                               ZEROS.tobytes()), 400, "both 'data' and"),
    "too many images": (infer_json([image((9, 1, 28, 28))]), 413, "the limit is 8"),
    "body over the upload limit": (infer_binary({"inputs": [image((8, 1, 28, 28), data=None, parameters={
        "binary_data_size": 1_100_000})]}, b"\0" * 1_100_000), 413, "CNNZOO_MAX_UPLOAD_BYTES"),
    "not an image": (infer_binary({"inputs": [png_bytes(b"hello")]}, serialized(b"hello")), 400,
                     "image_bytes[0]: the body is not an image"),
    "truncated PNG": (infer_binary({"inputs": [png_bytes(encode(DIGIT)[:60])]}, serialized(encode(DIGIT)[:60])),
                      400, "image_bytes[0]"),
    "empty image": (infer_binary({"inputs": [png_bytes(encode(DIGIT), b"")]}, serialized(encode(DIGIT), b"")),
                    400, "image_bytes[1]: the image is empty"),
    "decompression bomb": (infer_binary({"inputs": [png_bytes(encode(Image.new("1", (12_000, 12_000))))]},
                                        serialized(encode(Image.new("1", (12_000, 12_000))))), 413,
                           "the limit is 4,000,000"),
    "BYTES element length past its data": (infer_binary({"inputs": [{**png_bytes(b"x" * 10)}]},
                                                        (100).to_bytes(4, "little") + b"x" * 10), 400,
                                           "says 100 bytes"),
    "gzip body": ({**infer_json([image()]), "content": gzip.compress(json.dumps({"inputs": [image()]}).encode()),
                   "headers": {"content-encoding": "gzip"}}, 400, "Content-Encoding 'gzip'"),
    "wrong method": ({"url": "/v2/models/cnn-mnist/infer", "method": "GET"}, 405, "GET is not allowed"),
    "unknown v2 route": ({"url": "/v2/models/cnn-mnist/statistics", "method": "GET"}, 404, "no route"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_requests_get_the_protocols_json_error(client: httpx.Client, case: str) -> None:
    request, status, message = CASES[case]
    response = client.request(**request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"  # exactly: KServe's client compares it
    assert set(response.json()) == {"error"} and message in response.json()["error"]


def test_no_bad_request_made_a_server_error_and_each_was_counted(server, client: httpx.Client) -> None:
    for case in CASES:
        assert client.request(**CASES[case][0]).status_code < 500
    assert client.request(**infer_json([image()])).status_code == 200
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics and 'error="internal_error"' not in metrics
    assert "Traceback" not in server.log()
    counted = dict(re.findall(r'^cnnzoo_requests_total\{endpoint="v2_infer",model="cnn-mnist",status="(\d+)"\} (\S+)$',
                              metrics, re.MULTILINE))
    assert float(counted["200"]) >= 1 and float(counted["400"]) >= 20 and float(counted["413"]) >= 3
    assert re.search(r'^cnnzoo_errors_total\{error="invalid_tensor",model="cnn-mnist"\} ', metrics, re.MULTILINE)


def test_any_float32_bits_are_computed_as_triton_would(client: httpx.Client) -> None:
    """perf_analyzer's default input is random bytes, NaNs and infinities among them: not refused."""
    bits = np.random.default_rng(0).integers(0, 256, 8 * 784 * 4, dtype=np.uint8).tobytes()
    request = infer_binary({"inputs": [image((8, 1, 28, 28), data=None, parameters={"binary_data_size": len(bits)})],
                            "parameters": {"binary_data_output": True}}, bits)
    response = client.request(**request)
    assert response.status_code == 200
    assert np.isnan(np.frombuffer(bits, "<f4")).any()  # the case this test is about


def test_an_unavailable_model_answers_503_and_unavailable(repo_copy, tmp_path) -> None:
    import grpc
    import tritonclient.grpc as triton_grpc
    from testkit.live_server import running_server

    (repo_copy / "lenet5-cifar10" / "1" / "model.onnx").write_bytes(b"corrupt")
    with running_server(repo_copy, tmp_path) as srv, srv.client() as http:
        assert http.get("/v2/health/ready").json() == {"ready": True}  # one model serves
        assert http.get("/v2/models/lenet5-cifar10/ready").json() == {"name": "lenet5-cifar10", "ready": False}
        refused = http.post("/v2/models/lenet5-cifar10/infer", json={"inputs": [image((1, 3, 32, 32))]})
        assert refused.status_code == 503 and "sha256" in refused.json()["error"]
        with pytest.raises(InferenceServerException, match="sha256"):
            triton_http.InferenceServerClient(srv.url.removeprefix("http://")).get_model_metadata("lenet5-cifar10")
        with triton_grpc.InferenceServerClient(srv.grpc_address) as client:
            assert not client.is_model_ready("lenet5-cifar10")
            with pytest.raises(InferenceServerException) as unavailable:
                client.get_model_metadata("lenet5-cifar10")
        assert unavailable.value.status() == str(grpc.StatusCode.UNAVAILABLE)
