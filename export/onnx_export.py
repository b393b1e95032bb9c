"""PyTorch module -> one self-contained ONNX file with the model's metadata embedded.

The graph contract (docs/model-repository.md): input `image` (float32, NCHW, already
normalised), output `logits`, a dynamic batch axis named `batch`.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as package_metadata
from pathlib import Path

import onnx
import torch
import torch.nn as nn
from torch.export import Dim

from export.errors import ExportError
from modelrepo.layout import BATCH_AXIS, INPUT_NAME, OUTPUT_NAME
# Pinned, not the exporter's default, so a torch upgrade does not silently change the graph;
# opset 20 runs on ONNX Runtime >= 1.17 (and the Triton releases built on it).
OPSET = 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path,
                metadata: dict) -> None:
    """Export `model` (put in eval mode, on CPU) to `path` and embed `metadata`."""
    model = model.eval().cpu()
    # Batch 2, not 1: torch.export specialises axes of size 0 and 1 to constants.
    example = torch.zeros(2, *input_shape)
    path = Path(path)
    torch.onnx.export(model, (example,), str(path), dynamo=True,
                      dynamic_shapes=({0: Dim(BATCH_AXIS)},),
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      opset_version=OPSET, external_data=False, verbose=False)
    side_files = [p.name for p in path.parent.iterdir() if p != path and p.name.startswith(path.name)]
    if side_files:
        raise ExportError(f"{path}: the exporter wrote external-data files {side_files}; "
                          "the model repository needs one self-contained file")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    embed_metadata(proto, metadata)
    onnx.save(proto, str(path))


def embed_metadata(proto: onnx.ModelProto, metadata: dict) -> None:
    """Store each entry in `metadata_props` as JSON text, so every value reads back with its type."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))


def read_metadata(path: Path) -> dict:
    """The metadata `export_onnx` embedded, each value decoded from JSON."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


def exporter_versions() -> dict[str, str | int]:
    """Versions of everything that shaped the ONNX file and its parity check."""
    import onnxruntime
    import onnxscript

    return {
        "cnnzoo": _version("cnnzoo"),
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": OPSET,
    }


def _version(package: str) -> str:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return "unknown"
