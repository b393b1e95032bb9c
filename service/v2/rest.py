"""The HTTP body of an inference request and of its answer: JSON, and Triton's binary tensor data extension.

A body is a JSON object, optionally followed by binary tensor data; the header
`Inference-Header-Content-Length` says where the JSON ends (without it, all of the body is
JSON). An input whose parameters carry `binary_data_size` takes that many bytes of what follows,
in the order of the inputs, and together they must take all of it. An answer carries an output
in binary when that output's `binary_data` parameter says so, or else when the request's
`binary_data_output` does (tritonclient asks for binary by default); it then sets the same
header on the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from service.v2.errors import InvalidTensor
from service.v2.tensors import InferenceRequest, RequestedOutput, Tensor, from_json, from_raw, to_json_data, to_raw

HEADER_LENGTH = "Inference-Header-Content-Length"

Dimension = Annotated[int, msgspec.Meta(ge=0)]


class _Input(msgspec.Struct):
    name: str
    datatype: str
    shape: list[Dimension]
    parameters: dict[str, Any] = {}
    data: Any = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class _Request(msgspec.Struct):
    """$inference_request; other keys (KServe's client adds `model_name`) are ignored."""

    inputs: list[_Input]
    id: str = ""
    parameters: dict[str, Any] = {}
    outputs: list[_Output] | None = None


_decoder = msgspec.json.Decoder(_Request)


def decode_request(body: bytes, header_length: str | None) -> InferenceRequest:
    json_end = _json_end(body, header_length)
    try:
        parsed = _decoder.decode(body[:json_end])
    except msgspec.ValidationError as err:
        raise InvalidTensor(f"the inference request does not fit the protocol: {err}") from None
    except msgspec.DecodeError as err:
        raise InvalidTensor(f"the inference request is not valid JSON ({err})") from None
    binary, offset, inputs = memoryview(body)[json_end:], 0, []
    for item in parsed.inputs:
        where = f"input {item.name!r}"
        size = _parameter(item.parameters, "binary_data_size", int, where)
        if size is None:
            if item.data is None:
                raise InvalidTensor(f"{where} has neither 'data' nor a 'binary_data_size' parameter")
            inputs.append(from_json(item.name, item.datatype, tuple(item.shape), item.data))
            continue
        if item.data is not None:
            raise InvalidTensor(f"{where} has both 'data' and a 'binary_data_size' parameter")
        if offset + size > len(binary):
            raise InvalidTensor(f"{where}: binary_data_size {size} runs past the end of the body "
                                f"({len(binary) - offset} bytes of binary data left)")
        inputs.append(from_raw(item.name, item.datatype, tuple(item.shape), bytes(binary[offset:offset + size])))
        offset += size
    if offset != len(binary):
        raise InvalidTensor(f"{len(binary) - offset} bytes of binary data follow the JSON that no input's "
                            "binary_data_size accounts for")
    outputs = None if parsed.outputs is None else [
        RequestedOutput(o.name, classification=_parameter(o.parameters, "classification", int, f"output {o.name!r}") or 0,
                        binary=_parameter(o.parameters, "binary_data", bool, f"output {o.name!r}"))
        for o in parsed.outputs]
    binary_outputs = _parameter(parsed.parameters, "binary_data_output", bool, "the request") or False
    return InferenceRequest(parsed.id, inputs, outputs, binary_outputs)


def encode_response(model_name: str, model_version: str, request: InferenceRequest,
                    outputs: list[Tensor]) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON part when binary data follows it (else None)."""
    requested = {o.name: o for o in request.outputs or []}
    described, blobs = [], []
    for tensor in outputs:
        wanted = requested.get(tensor.name)
        binary = wanted.binary if wanted is not None and wanted.binary is not None else request.binary_outputs
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if binary:
            raw = to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = to_json_data(tensor)
        described.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": described}
    if request.id:
        answer["id"] = request.id
    header = msgspec.json.encode(answer)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _json_end(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidTensor(f"{HEADER_LENGTH} must be a whole number of bytes, not {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise InvalidTensor(f"{HEADER_LENGTH} says {length} bytes of JSON, but the body has {len(body)} bytes")
    return length


def _parameter(parameters: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """parameters[key] if present, checked: int means a whole number >= 0 (not a boolean)."""
    value = parameters.get(key)
    if value is None:
        return None
    fits = isinstance(value, bool) if kind is bool else (type(value) is int and value >= 0)
    if not fits:
        wanted = "true or false" if kind is bool else "a whole number >= 0"
        raise InvalidTensor(f"{where}: parameter {key!r} must be {wanted}, not {value!r}")
    return value
