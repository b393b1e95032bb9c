"""The Open Inference Protocol over gRPC, through tritonclient.grpc and Triton's own service stub.

Against real servers on loopback: the starter models for answers checked against the truth,
the shared random-weight server (small limits) for status codes, and servers of their own for
stopping on SIGTERM and sharing the port between worker processes.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from testkit.fixture_images import encode, mnist_test
from google.protobuf import text_format
from testkit.live_server import free_port, running_server
from PIL import Image
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException
from v2_data import accuracy, predict_probabilities, real_images

from service.app import SHUTDOWN_MESSAGE

MNIST, CIFAR = "cnn-mnist", "nin-cifar10"


@pytest.fixture(scope="module")
def triton(v2_server) -> triton_grpc.InferenceServerClient:
    client = triton_grpc.InferenceServerClient(v2_server.grpc_address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits(starter_repo):
    return real_images(starter_repo / MNIST, 64)


def image_input(tensor: np.ndarray) -> triton_grpc.InferInput:
    tensor_input = triton_grpc.InferInput("image", list(tensor.shape), "FP32")
    tensor_input.set_data_from_numpy(tensor)  # raw_input_contents, as tritonclient always sends
    return tensor_input


def bytes_input(pngs: list[bytes]) -> triton_grpc.InferInput:
    tensor_input = triton_grpc.InferInput("image_bytes", [len(pngs)], "BYTES")
    tensor_input.set_data_from_numpy(np.array(pngs, dtype=object))
    return tensor_input


def status_code(error: InferenceServerException) -> grpc.StatusCode:
    return grpc.StatusCode[error.status().removeprefix("StatusCode.")]  # tritonclient gives its str()


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return status_code(refused.value)


def test_health_metadata_and_config(triton, v2_server, starter_repo) -> None:
    assert f"gRPC (Open Inference Protocol) on {v2_server.grpc_address}" in v2_server.log()
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready(MNIST)
    assert set(triton.get_server_metadata().extensions) >= {"binary_tensor_data", "classification"}
    metadata = triton.get_model_metadata(MNIST)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("image", "FP32", [-1, 1, 28, 28])]
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("logits", [-1, 10]), ("probabilities", [-1, 10])]
    on_disk = text_format.Parse((starter_repo / MNIST / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert triton.get_model_config(MNIST).config == on_disk


def test_raw_fp32_tensors_get_the_models_answers_and_the_true_labels(triton, digits) -> None:
    result = triton.infer(MNIST, [image_input(digits.tensor)], request_id="grpc-1")
    assert result.get_response().id == "grpc-1" and result.get_response().model_version == "1"
    assert np.array_equal(result.as_numpy("logits"), digits.expected_logits())
    assert accuracy(result.as_numpy("probabilities"), digits.labels) >= 0.97


def test_typed_contents_give_what_raw_contents_give(v2_server, digits) -> None:
    """fp32_contents and bytes_contents, through Triton's generated stub (tritonclient sends raw only)."""
    with grpc.insecure_channel(v2_server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=MNIST)
        request.inputs.add(name="image", datatype="FP32", shape=[4, 1, 28, 28]).contents.fp32_contents.extend(
            digits.tensor[:4].ravel().tolist())
        typed = stub.ModelInfer(request)
        images = service_pb2.ModelInferRequest(model_name=MNIST)
        images.inputs.add(name="image_bytes", datatype="BYTES", shape=[4]).contents.bytes_contents.extend(
            digits.pngs[:4])
        by_bytes = stub.ModelInfer(images)
    assert [o.name for o in typed.outputs] == ["logits", "probabilities"]
    logits = np.frombuffer(typed.raw_output_contents[0], "<f4").reshape(4, 10)
    assert np.array_equal(logits, digits.expected_logits()[:4])
    assert np.array_equal(np.frombuffer(by_bytes.raw_output_contents[0], "<f4").reshape(4, 10), logits)


def test_bytes_images_answer_as_predict_does(triton, v2_server, digits) -> None:
    probabilities = triton.infer(MNIST, [bytes_input(digits.pngs[:8])]).as_numpy("probabilities")
    by_predict = np.stack([predict_probabilities(v2_server.url, MNIST, png) for png in digits.pngs[:8]])
    assert np.array_equal(probabilities, by_predict.astype(np.float32))


def test_grpc_and_http_give_equal_answers_for_cifar(triton, v2_server, starter_repo) -> None:
    photos = real_images(starter_repo / CIFAR, 16)
    by_grpc = triton.infer(CIFAR, [image_input(photos.tensor)]).as_numpy("logits")
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(photos.tensor.shape),
                        "data": photos.tensor.ravel().tolist()}], "outputs": [{"name": "logits"}]}
    by_http = httpx.post(f"{v2_server.url}/v2/models/{CIFAR}/infer", json=body).json()["outputs"][0]["data"]
    assert np.array_equal(by_grpc, np.asarray(by_http, np.float32).reshape(16, 10))
    assert np.array_equal(by_grpc, photos.expected_logits())


def test_classification(triton, digits) -> None:
    ranked = triton.infer(MNIST, [image_input(digits.tensor[:2])], outputs=[
        triton_grpc.InferRequestedOutput("probabilities", class_count=2)]).as_numpy("probabilities")
    probabilities = triton.infer(MNIST, [image_input(digits.tensor[:2])]).as_numpy("probabilities")
    assert ranked.shape == (2, 2)
    for row, entries in zip(probabilities, ranked):
        indices = [int(entry.decode().split(":")[1]) for entry in entries]
        assert indices == list(np.argsort(-row)[:2])
        assert all(entry.decode().endswith(f":{i}:{i}") for entry, i in zip(entries, indices))  # MNIST labels


# ---- status codes, on the shared random-weight server (upload 1 MB, 8 images per request) ------------

@pytest.fixture(scope="module")
def small(server) -> triton_grpc.InferenceServerClient:
    client = triton_grpc.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


def test_refusals_are_status_codes(small, server) -> None:
    zeros = np.zeros((1, 1, 28, 28), np.float32)
    assert code_of(lambda: small.infer("nope", [image_input(zeros)])) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: small.infer(MNIST, [image_input(zeros)], model_version="2")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: small.get_model_metadata("nope")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: small.infer(MNIST, [image_input(np.zeros((1, 3, 28, 28), np.float32))])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: small.infer(MNIST, [bytes_input([b"not an image"])])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: small.infer(MNIST, [image_input(np.zeros((9, 1, 28, 28), np.float32))])) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED  # more images than CNNZOO_MAX_BATCH_IMAGES
    too_big = np.zeros((8, 1, 28, 28), np.uint8).tobytes() * 100  # 627 KB per copy: over 1 MB in all
    assert code_of(lambda: small.infer(MNIST, [bytes_input([too_big, too_big])])) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED  # over CNNZOO_MAX_UPLOAD_BYTES
    assert code_of(lambda: small.get_inference_statistics(MNIST)) == grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(server.grpc_address) as channel:
        request = service_pb2.ModelInferRequest(model_name=MNIST, raw_input_contents=[b"", b""])
        request.inputs.add(name="image", datatype="FP32", shape=[1, 1, 28, 28])
        with pytest.raises(grpc.RpcError) as refused:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "one for each input" in refused.value.details()


def test_grpc_calls_are_counted_in_the_metrics(small, server) -> None:
    small.infer(MNIST, [image_input(np.zeros((2, 1, 28, 28), np.float32))])
    code_of(lambda: small.infer(MNIST, [image_input(np.zeros((1, 2, 28, 28), np.float32))]))
    metrics = httpx.get(f"{server.url}/metrics").text
    counted = dict(re.findall(
        r'^cnnzoo_requests_total\{endpoint="v2_grpc_infer",model="cnn-mnist",status="(\d+)"\} (\S+)$',
        metrics, re.MULTILINE))
    assert float(counted["200"]) >= 1 and float(counted["400"]) >= 1
    assert "Traceback" not in server.log()


# ---- the server's life: SIGTERM, worker processes, the port --------------------------------------------

def test_sigterm_answers_grpc_calls_in_flight_and_refuses_new_ones(random_repo: Path, tmp_path: Path) -> None:
    # 32 36-megapixel PNGs (5.5 MB) take the server about 2 s to decode on a fast Xeon, several on
    # slower CPUs: a call still in flight when SIGTERM comes at 0.5 s (eight were not, there),
    # past the default budget of a request: raised for it.
    images = 32
    gradient = (np.add.outer(np.arange(6000), np.arange(6000)) % 256).astype(np.uint8)
    large = encode(Image.fromarray(gradient), compress_level=1)
    with running_server(random_repo, tmp_path, max_upload_bytes=50_000_000, max_request_pixels=images * 36_000_000,
                        graceful_timeout_s=30) as srv:
        client = triton_grpc.InferenceServerClient(srv.grpc_address)
        answers: list = []
        call = threading.Thread(target=lambda: answers.append(
            (client.infer(MNIST, [bytes_input([large] * images)]), time.monotonic())))
        call.start()
        time.sleep(0.5)
        srv.process.send_signal(15)  # SIGTERM
        signalled = time.monotonic()
        time.sleep(0.2)
        with pytest.raises(InferenceServerException) as refused:
            triton_grpc.InferenceServerClient(srv.grpc_address).is_server_live()
        call.join(60)
        exit_code = srv.stop()
    (result, answered), = answers
    assert answered > signalled  # it was in flight, and was answered
    assert result.as_numpy("probabilities").shape == (images, 10)
    assert status_code(refused.value) == grpc.StatusCode.UNAVAILABLE
    assert exit_code in (0, -15)
    assert SHUTDOWN_MESSAGE in srv.log()


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on `port` (the kernel's table: one per process with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


def test_worker_processes_share_the_grpc_port(random_repo: Path, tmp_path: Path) -> None:
    with running_server(random_repo, tmp_path, workers=2) as srv:
        port = int(srv.grpc_address.rsplit(":", 1)[1])
        deadline = time.monotonic() + 60
        while listening_sockets(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listening_sockets(port) == 2  # one socket per worker, shared through SO_REUSEPORT
        ready_in_a_row = 0
        while ready_in_a_row < 10 and time.monotonic() < deadline:  # until both workers have loaded
            with triton_grpc.InferenceServerClient(srv.grpc_address) as client:
                ready_in_a_row = ready_in_a_row + 1 if client.is_server_ready() else 0
        for _ in range(10):  # new connections, spread by the kernel: every worker answers
            with triton_grpc.InferenceServerClient(srv.grpc_address) as client:
                assert client.infer(MNIST, [image_input(np.zeros((1, 1, 28, 28), np.float32))]
                                    ).as_numpy("logits").shape == (1, 10)


def test_one_process_does_not_share_a_port_in_use(random_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:  # as a worker of another server would hold it
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(RuntimeError, match=rf"CNNZOO_GRPC_PORT: cannot listen on 127\.0\.0\.1:{port}"):
            with running_server(random_repo, tmp_path, grpc_port=port):
                pass


def test_grpc_port_0_switches_grpc_off(random_repo: Path, tmp_path: Path) -> None:
    with running_server(random_repo, tmp_path, grpc_port=0) as srv:
        assert httpx.get(f"{srv.url}/v2/health/live").json() == {"live": True}  # HTTP serves v2 all the same
    assert "gRPC (Open Inference Protocol) on" not in srv.log()


def test_the_readmes_tritonclient_example_runs(v2_server, tmp_path: Path, capsys, monkeypatch) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("### The Open Inference Protocol"):]
    example = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
    (tmp_path / "digit.png").write_bytes(encode(mnist_test()[0][0]))  # a 7
    monkeypatch.chdir(tmp_path)
    exec(example.replace("127.0.0.1:8001", v2_server.grpc_address), {})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"\[\[b'[0-9.]+:7:7' b'[0-9.]+:\d:\d' b'[0-9.]+:\d:\d'\]\]\n", printed), printed
