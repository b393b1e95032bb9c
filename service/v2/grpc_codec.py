"""`ModelInferRequest` -> `InferenceRequest`, and outputs -> `ModelInferResponse`.

An input's elements come either typed (`contents.fp32_contents`, `contents.bytes_contents`) or
raw (`raw_input_contents`, one entry per input, in the layout of tensors.py); the protocol
says a request that uses raw contents uses them for every input. Outputs always go raw, as
Triton sends them and tritonclient reads them.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import Message

from service.v2.errors import InvalidTensor
from service.v2.protos import schema
from service.v2.tensors import (BYTES, FP32, FP32_DTYPE, InferenceRequest, RequestedOutput, Tensor, from_raw,
                                serialize_bytes, to_raw)


def decode_request(message: Message) -> InferenceRequest:
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidTensor(f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs: a request that "
                            "uses raw contents must give one for each input")
    inputs = []
    for index, item in enumerate(message.inputs):
        shape = tuple(item.shape)
        if any(d < 0 for d in shape):
            raise InvalidTensor(f"input {item.name!r}: shape {list(shape)} has a negative dimension")
        inputs.append(from_raw(item.name, item.datatype, shape, raw[index] if raw else _typed_contents(item)))
    outputs = [RequestedOutput(o.name, classification=_classification(o)) for o in message.outputs] or None
    return InferenceRequest(message.id, inputs, outputs)


def encode_response(model_name: str, model_version: str, request_id: str, outputs: list[Tensor]) -> Message:
    response = schema().message("ModelInferResponse")(model_name=model_name, model_version=model_version,
                                                      id=request_id)
    for tensor in outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        response.raw_output_contents.append(to_raw(tensor))
    return response


def _typed_contents(item: Message) -> bytes:
    """Typed contents in the raw layout, so that one decoder (tensors.from_raw) checks both kinds."""
    if item.datatype == FP32:
        return np.asarray(item.contents.fp32_contents, FP32_DTYPE).tobytes()
    if item.datatype == BYTES:
        return serialize_bytes(list(item.contents.bytes_contents))
    return b""  # tensors.from_raw names the unsupported datatype


def _classification(output: Message) -> int:
    if "classification" not in output.parameters:
        return 0
    parameter = output.parameters["classification"]
    if parameter.WhichOneof("parameter_choice") != "int64_param" or parameter.int64_param < 0:
        raise InvalidTensor(f"output {output.name!r}: parameter 'classification' must be an int64 >= 0")
    return parameter.int64_param
