"""The ONNX file: the graph contract of docs/model-repository.md, one self-contained file, metadata round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import (BATCH_AXIS, INPUT_NAME, OPSET, OUTPUT_NAME, embed_metadata,
                                export_onnx, read_metadata)
from training.batches import normalise
from training.datasets import DATASETS
from training.registry import build_model


@pytest.fixture(scope="module")
def exported_lenet(tmp_path_factory) -> tuple[Path, torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model("lenet5", 3, 32, 10).eval()
    metadata = {"id": "lenet5-cifar10", "classes": list(DATASETS["cifar10"].classes),
                "test_accuracy": 0.6543, "input": {"shape": [3, 32, 32]}, "weights_sha256": "ab" * 32}
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(model, (3, 32, 32), folder / "model.onnx", metadata)
    return folder / "model.onnx", model, metadata


def test_graph_has_the_contracted_input_and_output(exported_lenet):
    path, _, _ = exported_lenet
    graph = onnx.load(str(path)).graph
    (image,), (logits,) = graph.input, graph.output
    assert image.name == INPUT_NAME and logits.name == OUTPUT_NAME
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    image_dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    logits_dims = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim]
    assert image_dims == [BATCH_AXIS, 3, 32, 32]
    assert logits_dims == [BATCH_AXIS, 10]


def test_file_is_self_contained_and_pinned_to_the_opset(exported_lenet):
    path, _, _ = exported_lenet
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no external-data side file
    proto = onnx.load(str(path))
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    assert {op.domain: op.version for op in proto.opset_import}[""] == OPSET


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_any_batch_size_runs_and_matches_pytorch(exported_lenet, fixture_test_split, batch):
    path, model, _ = exported_lenet
    x = normalise(fixture_test_split("cifar10").images[:batch], DATASETS["cifar10"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    with torch.inference_mode():
        expected = model(x).numpy()
    assert logits.shape == (batch, 10)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


def test_metadata_round_trips_with_types(exported_lenet):
    path, _, metadata = exported_lenet
    assert read_metadata(path) == metadata
    assert isinstance(read_metadata(path)["test_accuracy"], float)


def test_metadata_is_visible_to_onnx_runtime(exported_lenet):
    """The service reads it through ONNX Runtime, which has no torch and no onnx package."""
    path, _, _ = exported_lenet
    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert props["id"] == '"lenet5-cifar10"'
    assert props["test_accuracy"] == "0.6543"


def test_embedding_again_replaces_rather_than_duplicates():
    proto = onnx.ModelProto()
    embed_metadata(proto, {"id": "a", "keep": 1})
    embed_metadata(proto, {"id": "b"})
    assert sorted((p.key, p.value) for p in proto.metadata_props) == [("id", '"b"'), ("keep", "1")]
