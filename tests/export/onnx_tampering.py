"""Faults for the gate to catch: ONNX weights changed after export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def perturb_onnx_weights(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite the largest weight tensor of an exported graph with `change(array)`."""
    proto = onnx.load(str(path))
    target = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    target.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(target)), target.name))
    onnx.save(proto, str(path))


def tampering(real_export: Callable) -> Callable:
    """An exporter that runs `real_export`, then scales the largest weight tensor by 1.05."""
    def export_then_tamper(model, input_shape, path, metadata):
        real_export(model, input_shape, path, metadata)
        perturb_onnx_weights(path, lambda w: w * np.float32(1.05))
    return export_then_tamper
