"""The kserve SDK, imported so that tritonclient.grpc can live in the same test process.

Both packages ship generated protobuf modules for a package `inference` (kserve:
grpc_predict_v2.proto, tritonclient: grpc_service.proto) that declare the same messages, and
both register them with protobuf's default descriptor pool on import; protobuf refuses the
second, so whichever of the two a test session imports later fails (tests/deploy needs kserve,
tests/export and tests/service need tritonclient.grpc). The SDK is imported here with a pool of
its own standing in for the default one. Import kserve from this module, never directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from google.protobuf import descriptor_pool


@contextmanager
def _private_default_pool() -> Iterator[None]:
    default, private = descriptor_pool.Default, descriptor_pool.DescriptorPool()
    descriptor_pool.Default = lambda: private
    try:
        yield
    finally:
        descriptor_pool.Default = default


def _import_kserve():
    # Importing kserve starts its model server's argument parser on sys.argv; pytest's own
    # options would reach it (`--co` reads as its `--configure_logging`) and make it exit.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        with _private_default_pool():
            import kserve
    finally:
        sys.argv = argv
    return kserve


kserve = _import_kserve()
