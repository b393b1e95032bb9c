"""An int8 model is served like any other: a real server on a repository holding cnn-mnist and the
cnn-mnist-int8 that the real quantizer makes from it (testkit/int8_models.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from testkit.fixture_images import encode, mnist_test
from testkit.int8_models import quantize_committed
from testkit.live_server import running_server

from modelrepo.providers import CPU
from service.preprocess import preprocess
from service.repository import load_model

PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def int8_repo(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("int8-serving") / "models"
    quantize_committed("cnn-mnist", repo, fixtures_dir)
    return repo


@pytest.fixture(scope="module")
def client(int8_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with running_server(int8_repo, tmp_path_factory.mktemp("int8-logs")) as server, server.client() as http:
        yield http


def test_models_shows_which_model_is_int8(client: httpx.Client) -> None:
    listed = {m["id"]: m for m in client.get("/models").json()["models"]}
    assert set(listed) == {"cnn-mnist", "cnn-mnist-int8"}
    assert (listed["cnn-mnist-int8"]["precision"], listed["cnn-mnist"]["precision"]) == ("int8", "fp32")
    assert listed["cnn-mnist-int8"]["status"] == "ready" and listed["cnn-mnist-int8"]["error"] is None
    assert listed["cnn-mnist-int8"]["input_method"] == "draw"


def test_the_int8_card_is_served_whole(client: httpx.Client, int8_repo: Path) -> None:
    answer = client.get("/models/cnn-mnist-int8").json()
    card = json.loads((int8_repo / "cnn-mnist-int8" / "card.json").read_text())
    assert {key: answer.get(key) for key in card} == card
    assert answer["quantization"]["gate"]["passed"] is True and answer["parity"] is None


def test_the_int8_model_classifies_real_digits_as_its_file_does(client: httpx.Client, int8_repo: Path) -> None:
    digits, labels = mnist_test()
    model = load_model(int8_repo / "cnn-mnist-int8", (CPU,))
    sample = range(0, 500, 25)
    answers = [client.post("/predict/cnn-mnist-int8", content=encode(digits[i]), headers=PNG).json() for i in sample]
    expected = [int(model.classify(preprocess(encode(digits[i]), model.spec, 10**8)[None])[0].argmax()) for i in sample]
    assert [a["index"] for a in answers] == expected
    assert np.mean([a["index"] == labels[i] for a, i in zip(answers, sample)]) >= 0.95
    assert {a["model"] for a in answers} == {"cnn-mnist-int8"} and answers[0]["provider"] == CPU
