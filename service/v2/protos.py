"""Triton's protobuf schema (the gRPC service and `ModelConfig`) at run time, without tritonclient.

The messages are the ones the `tritonclient` package ships: its generated modules
`tritonclient.grpc.model_config_pb2` and `service_pb2` (from Triton's `model_config.proto` and
`grpc_service.proto`). Building this package (setup.py) copies their file descriptors into
`triton_protocol.binpb`, so tritonclient is a build requirement only, and the serving install
needs no more than protobuf and grpcio. At run time the message classes are rebuilt from that
file in a private descriptor pool: no generated code of ours, no copy of the .proto files, and
no tie between the protoc that generated tritonclient's modules and the protobuf installed here
(a descriptor set is plain protobuf data, readable by any protobuf version).

    python -m service.v2.protos      # rewrite the file from the installed tritonclient
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

DESCRIPTOR_SET = Path(__file__).with_name("triton_protocol.binpb")
# tritonclient's generated modules, each after the files it imports.
SOURCE_MODULES = ("tritonclient.grpc.model_config_pb2", "tritonclient.grpc.service_pb2")
PACKAGE = "inference"  # the protos' package: messages are inference.<Name>
SERVICE = f"{PACKAGE}.GRPCInferenceService"


class ProtocolSchemaMissing(RuntimeError):
    """The descriptor file was not built: the package was not installed through its build."""


def descriptor_set() -> bytes:
    """The file descriptors of tritonclient's modules, as a serialized FileDescriptorSet (build time)."""
    files = descriptor_pb2.FileDescriptorSet()
    for name in SOURCE_MODULES:
        files.file.add().ParseFromString(importlib.import_module(name).DESCRIPTOR.serialized_pb)
    return files.SerializeToString()


def write_descriptor_set(path: Path = DESCRIPTOR_SET) -> Path:
    path.write_bytes(descriptor_set())
    return path


@dataclass(frozen=True)
class Schema:
    """The protocol's message classes and its service, from one descriptor pool."""

    classes: dict[str, type[Message]]
    service: ServiceDescriptor

    def message(self, name: str) -> type[Message]:
        """The class of message `inference.<name>`, e.g. `schema.message("ModelConfig")`."""
        return self.classes[f"{PACKAGE}.{name}"]


@functools.cache
def schema() -> Schema:
    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    except FileNotFoundError:
        raise ProtocolSchemaMissing(
            f"{DESCRIPTOR_SET.name} is missing from {DESCRIPTOR_SET.parent}: it is made when the package is built "
            "(pip install ., or pip install -e . in a checkout: make setup) or by `python -m service.v2.protos` "
            "with tritonclient[grpc] installed") from None
    pool = descriptor_pool.DescriptorPool()  # private: tritonclient, if imported too, keeps the default pool
    for file in files.file:
        pool.Add(file)
    classes = message_factory.GetMessageClassesForFiles([file.name for file in files.file], pool)
    return Schema(classes, pool.FindServiceByName(SERVICE))


if __name__ == "__main__":
    print(f"wrote {write_descriptor_set()}", file=sys.stderr)
