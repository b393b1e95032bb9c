"""PyTorch module -> one self-contained ONNX file with the model's metadata embedded.

The graph contract (docs/model-repository.md): input `image` (float32, NCHW, already
normalised), output `logits`, a dynamic batch axis named `batch`.
"""

from __future__ import annotations

from importlib import metadata as package_metadata
from pathlib import Path

import onnx
import torch
import torch.nn as nn
from torch.export import Dim

from export.errors import ExportError
# Re-exported: they live in the torch-free module that the int8 path shares.
from export.model_folder import embed_metadata, read_metadata, sha256_file  # noqa: F401
from modelrepo.layout import BATCH_AXIS, INPUT_NAME, OUTPUT_NAME
# Pinned, not the exporter's default, so a torch upgrade does not silently change the graph;
# opset 20 runs on ONNX Runtime >= 1.17 (and the Triton releases built on it).
OPSET = 20


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
