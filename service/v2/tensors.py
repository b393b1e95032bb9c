"""Tensors of the Open Inference Protocol, and the two ways their elements travel.

A tensor is a name, a datatype, a shape and its elements. The elements arrive either as JSON
(`data`, flat or nested, row-major) or as raw bytes: Triton's binary tensor data extension over
HTTP and `raw_*_contents` over gRPC use the same layout, little-endian numbers packed row-major,
and for BYTES each element as a 4-byte little-endian length followed by its bytes. cnnzoo takes
FP32 and BYTES tensors and answers with FP32 and BYTES ones; every way a tensor can disagree
with its own shape is an `InvalidTensor` naming the tensor.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.v2.errors import InvalidTensor

FP32 = "FP32"
BYTES = "BYTES"
FP32_DTYPE = np.dtype("<f4")
_LENGTH = struct.Struct("<I")  # the length before each BYTES element


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str  # FP32 or BYTES
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]  # FP32: an array of `shape`; BYTES: the elements, row-major


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    classification: int = 0  # k > 0: the k best classes as "value:index:label" (Triton's extension)
    binary: bool | None = None  # HTTP only; None: the request's `binary_data_output`


@dataclass(frozen=True)
class InferenceRequest:
    """One request, whichever way it came; `outputs` None means every output."""

    id: str
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    binary_outputs: bool = False  # HTTP: `binary_data_output`, the default for each output


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> Tensor:
    """A tensor from JSON `data`: a flat or nested list of numbers (FP32) or strings (BYTES)."""
    if not isinstance(data, list):
        raise InvalidTensor(f"input {name!r}: 'data' must be a list, not {type(data).__name__}")
    if datatype == FP32:
        try:
            numbers = np.asarray(data)
        except ValueError:  # ragged nesting
            raise InvalidTensor(f"input {name!r}: 'data' is not a regular nested list") from None
        if numbers.size and numbers.dtype.kind not in "iuf":  # bool, strings, objects, null
            raise InvalidTensor(f"input {name!r}: FP32 'data' must hold numbers only")
        _check_count(name, shape, numbers.size)
        return Tensor(name, datatype, shape, numbers.astype(FP32_DTYPE).reshape(shape))
    if datatype == BYTES:
        elements = list(_flatten(data))
        if not all(isinstance(e, str) for e in elements):
            raise InvalidTensor(f"input {name!r}: BYTES 'data' must hold strings only")
        _check_count(name, shape, len(elements))
        return Tensor(name, datatype, shape, [e.encode() for e in elements])
    raise _unsupported(name, datatype)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> Tensor:
    """A tensor from raw bytes (binary tensor data, or gRPC raw contents)."""
    if datatype == FP32:
        expected = element_count(shape) * FP32_DTYPE.itemsize
        if len(raw) != expected:
            raise InvalidTensor(f"input {name!r}: {len(raw)} bytes of data, but FP32 {list(shape)} takes "
                                f"{expected}")
        return Tensor(name, datatype, shape, np.frombuffer(raw, FP32_DTYPE).reshape(shape))
    if datatype == BYTES:
        elements = deserialize_bytes(name, raw)
        _check_count(name, shape, len(elements))
        return Tensor(name, datatype, shape, elements)
    raise _unsupported(name, datatype)


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == BYTES:
        return serialize_bytes(tensor.values)
    return np.ascontiguousarray(tensor.values, FP32_DTYPE).tobytes()


def to_json_data(tensor: Tensor) -> list:
    """The elements as a flat JSON list (BYTES as UTF-8 strings, as the protocol's JSON has them)."""
    if tensor.datatype == BYTES:
        return [element.decode("utf-8", errors="replace") for element in tensor.values]
    return np.asarray(tensor.values, FP32_DTYPE).ravel().tolist()


def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def deserialize_bytes(name: str, raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidTensor(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidTensor(f"input {name!r}: a BYTES element says {length} bytes, but only "
                                f"{len(raw) - offset} remain")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _check_count(name: str, shape: tuple[int, ...], count: int) -> None:
    if count != element_count(shape):
        raise InvalidTensor(f"input {name!r}: {count} elements of data, but shape {list(shape)} holds "
                            f"{element_count(shape)}")


def _flatten(data: list) -> Iterator[Any]:
    """Row-major elements of a nested list; iterative, so no nesting depth can exhaust the stack."""
    pending = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, list):
                pending.append(iter(item))
                break
            yield item
        else:
            pending.pop()


def _unsupported(name: str, datatype: str) -> InvalidTensor:
    return InvalidTensor(f"input {name!r}: datatype {datatype!r} is not supported; cnnzoo takes {FP32} and "
                         f"{BYTES} tensors")
