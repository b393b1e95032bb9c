"""ONNX Runtime execution providers by name, and the short names users type for them."""

from __future__ import annotations

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

ALIASES = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}


def provider_names(raw: str) -> tuple[str, ...]:
    """`cuda,cpu` -> (CUDA, CPU); full ONNX Runtime names pass through as they are."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    return tuple(ALIASES.get(name.lower(), name) for name in names)
