"""Every config.pbtxt parses with Triton's own ModelConfig schema and agrees with its model's card."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from modelrepo.card import read_card
from modelrepo.layout import CONFIG_FILE
from export.triton import MAX_BATCH_SIZE, config_pbtxt, labels_txt
from training.datasets import DATASETS

MODELS = Path(__file__).parents[2] / "models"
Config = model_config_pb2.ModelConfig


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, Config())  # raises ParseError on any field Triton does not know


def published_folders() -> list[Path]:
    return sorted(p.parent for p in MODELS.glob(f"*/{CONFIG_FILE}"))


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_generated_config_is_a_valid_onnx_model_config(dataset):
    spec = DATASETS[dataset]
    config = parse(config_pbtxt(f"net-{dataset}", spec.input_shape, len(spec.classes)))
    assert config.name == f"net-{dataset}"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == MAX_BATCH_SIZE > 0
    (image,), (logits,) = config.input, config.output
    assert (image.name, logits.name) == ("image", "logits")
    assert image.data_type == logits.data_type == model_config_pb2.TYPE_FP32
    assert list(image.dims) == list(spec.input_shape)  # no batch axis: max_batch_size > 0 adds it
    assert list(logits.dims) == [len(spec.classes)]
    assert logits.label_filename == "labels.txt"
    assert config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_AUTO]


def test_the_schema_rejects_a_misspelt_field():
    """The check above means something: Triton's schema refuses what it does not know."""
    with pytest.raises(text_format.ParseError):
        parse(config_pbtxt("x", (1, 28, 28), 10).replace("max_batch_size", "max_batch"))


def test_labels_file_has_one_class_per_line():
    assert labels_txt(["a", "b c"]) == "a\nb c\n"


@pytest.mark.parametrize("folder", published_folders(), ids=lambda p: p.name)
def test_every_published_config_parses_and_matches_its_card(folder):
    config = parse((folder / CONFIG_FILE).read_text())
    card = read_card(folder)
    assert config.name == folder.name == card.id
    assert list(config.input[0].dims) == card.input.shape
    assert list(config.output[0].dims) == card.output.shape
    assert (folder / config.output[0].label_filename).read_text().splitlines() == card.classes
    assert (folder / "1" / "model.onnx").is_file()  # Triton's version folder, "1"
