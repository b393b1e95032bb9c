"""What the protocol says about the server and a model: metadata and the model configuration.

The configuration is the model folder's own `config.pbtxt`, the file Triton reads, parsed with
Triton's `ModelConfig` schema: served as Triton serves it (JSON over HTTP, the message over gRPC),
so tools that size their requests from it (perf_analyzer reads `max_batch_size`) see the same
model on cnnzoo and on Triton. The metadata lists what the model serves: the input `image`
(FP32, batch axis -1) and the outputs `logits` and `probabilities`. `image_bytes` is accepted but
not listed: perf_analyzer and other generic clients fill every listed input with generated data,
and a request carries one input or the other.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from modelrepo.layout import CONFIG_FILE, MODEL_VERSION
from service.errors import ModelUnavailable
from service.repository import LoadedModel
from service.v2.inference import IMAGE, OUTPUTS
from service.v2.protos import schema
from service.v2.tensors import FP32

SERVER_NAME = "cnnzoo"
# Triton's names for the protocol extensions served here.
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration")
BATCH = -1  # the batch axis, in metadata shapes


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(model: LoadedModel, platform: str) -> dict[str, Any]:
    classes = len(model.card.classes)
    return {
        "name": model.id, "versions": [MODEL_VERSION], "platform": platform,
        "inputs": [{"name": IMAGE, "datatype": FP32, "shape": [BATCH, *model.card.input.shape]}],
        "outputs": [{"name": name, "datatype": FP32, "shape": [BATCH, classes]} for name in OUTPUTS],
    }


@functools.cache  # a folder's files do not change while it is served
def model_config(folder: Path) -> Message:
    """The folder's config.pbtxt as Triton's ModelConfig (503 if it cannot be read)."""
    try:
        text = (folder / CONFIG_FILE).read_text()
        return text_format.Parse(text, schema().message("ModelConfig")())
    except OSError as err:
        raise ModelUnavailable(f"model {folder.name!r} has no readable {CONFIG_FILE} ({err.strerror})") from None
    except text_format.ParseError as err:
        raise ModelUnavailable(f"model {folder.name!r}: {CONFIG_FILE} is not a valid Triton model "
                               f"configuration ({err})") from None


def config_json(config: Message) -> dict[str, Any]:
    """The configuration as Triton's HTTP API gives it: field names as in the .proto, 64-bit
    integers as JSON numbers (protobuf's own JSON writes them as strings)."""
    return _int64_as_numbers(MessageToDict(config, preserving_proto_field_name=True), config.DESCRIPTOR)


_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _int64_as_numbers(value: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    for name, item in value.items():
        field = descriptor.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            value[name] = {key: _converted(entry, v) for key, v in item.items()}
        elif isinstance(item, list):
            value[name] = [_converted(field, v) for v in item]
        else:
            value[name] = _converted(field, item)
    return value


def _converted(field: FieldDescriptor, item: Any) -> Any:
    if field.message_type is not None:
        return _int64_as_numbers(item, field.message_type)
    return int(item) if field.type in _INT64 else item
