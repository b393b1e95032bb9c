"""Loading the model repository: a model that cannot serve says why, and the others load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from service import repository
from service.settings import Settings

SETTINGS = Settings(providers=("CPUExecutionProvider",), max_batch=4)
NCHW = {"dtype": "float32", "layout": "NCHW"}


def load(folder: Path) -> repository.ServedModel:
    model = repository.ServedModel(id=folder.name, folder=folder)
    repository.load(model, SETTINGS, SETTINGS.providers)
    return model


def edit_card(folder: Path, **changes) -> None:
    card = json.loads((folder / "card.json").read_text())
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))


def test_a_published_model_loads_and_runs(random_repo: Path) -> None:
    model = load(random_repo / "cnn-mnist")
    assert model.error is None and model.session is not None
    assert model.provider == "CPUExecutionProvider"
    assert model.spec.kind == "digit" and model.card.classes == [str(d) for d in range(10)]
    logits = model.infer(np.zeros((3, 1, 28, 28), np.float32))
    assert logits.shape == (3, 10)


def test_discover_lists_model_folders_and_skips_hidden_ones(repo_copy: Path) -> None:
    (repo_copy / ".cnn-mnist.partial").mkdir()  # an export in progress
    (repo_copy / "README").write_text("not a model")
    assert [m.id for m in repository.discover(repo_copy)] == ["cnn-mnist", "lenet5-cifar10"]
    assert repository.discover(repo_copy / "missing") == []


def test_a_damaged_onnx_file_fails_its_checksum(repo_copy: Path) -> None:
    onnx = repo_copy / "cnn-mnist" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-100])
    model = load(repo_copy / "cnn-mnist")
    assert model.status == "unavailable" and model.session is None
    assert "sha256" in model.error and "damaged" in model.error


def test_a_file_that_is_not_onnx_is_refused_by_onnx_runtime(repo_copy: Path) -> None:
    # The card vouches for the bytes (the checksum passes), but they are no ONNX graph.
    onnx = repo_copy / "cnn-mnist" / "1" / "model.onnx"
    onnx.write_bytes(b"\x08\x07garbage that is not a protobuf graph" * 100)
    edit_card(repo_copy / "cnn-mnist", onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    model = load(repo_copy / "cnn-mnist")
    assert model.status == "unavailable"
    assert "ONNX Runtime cannot load the model" in model.error


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: (d / "card.json").unlink(), "card.json is missing"),
    (lambda d: (d / "card.json").write_text("{not json"), "not a valid card"),
    (lambda d: edit_card(d, classes="0123456789"), "not a valid card"),
    (lambda d: edit_card(d, id="other-model"), "sits in folder"),
    (lambda d: edit_card(d, classes=["a", "b"]), "does not match 2 classes"),
    (lambda d: edit_card(d, preprocessing={"kind": "audio", "mean": [0.1], "std": [0.3]}), "not a valid card"),
    (lambda d: edit_card(d, preprocessing={"kind": "digit", "mean": [0.1, 0.2], "std": [0.3]}), "mean/std"),
    (lambda d: edit_card(d, input={**NCHW, "name": "image", "shape": [1, 32, 32]}), "the card says"),
    (lambda d: edit_card(d, input={**NCHW, "name": "pixels", "shape": [1, 28, 28]}), "are not the card's"),
    (lambda d: (d / "1" / "model.onnx").unlink(), "cannot be read"),
])
def test_a_model_whose_card_or_files_do_not_fit_is_unavailable(repo_copy: Path, change, reason: str) -> None:
    change(repo_copy / "cnn-mnist")
    model = load(repo_copy / "cnn-mnist")
    assert model.status == "unavailable" and model.session is None
    assert reason in model.error
