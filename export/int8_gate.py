"""The int8 gate: an int8 model is published only if it keeps its fp32 model's answers.

It replaces the parity gate for int8 models: no quantized graph meets max |logit difference|
<= 1e-4, since int8 rounding moves logits by about 1e-2. Instead, both models run on ONNX
Runtime's CPU provider over the same real test images (the full test set for published models),
and the int8 model passes only with
- an accuracy drop (fp32 minus int8) of at most 0.5 points, and
- top-1 agreement with the fp32 model of at least 99 %: the same class for 99 images in 100,
  which a drop alone does not ensure (errors can trade places and keep the accuracy).
An image whose int8 logits are not finite counts as wrong and as a disagreement.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelrepo.card import Int8Gate

MAX_ACCURACY_DROP = 0.005  # a fraction: 0.5 points
MIN_TOP1_AGREEMENT = 0.99


@dataclass(frozen=True)
class Comparison:
    """An int8 model against its fp32 model on the same labelled images, as counts: fractions
    taken of differences of counts land exactly on a limit (1.0 - 0.995 is 0.0050000000000000044)."""

    images: int
    fp32_correct: int
    int8_correct: int
    agreeing: int

    @property
    def fp32_accuracy(self) -> float:
        return self.fp32_correct / self.images

    @property
    def int8_accuracy(self) -> float:
        return self.int8_correct / self.images

    @property
    def top1_agreement(self) -> float:
        return self.agreeing / self.images

    @property
    def accuracy_drop(self) -> float:
        return (self.fp32_correct - self.int8_correct) / self.images

    def passes(self) -> bool:
        return self.accuracy_drop <= MAX_ACCURACY_DROP and self.top1_agreement >= MIN_TOP1_AGREEMENT


def predictions(logits: np.ndarray) -> np.ndarray:
    """Top-1 class per row; -1 (never a label) where a row holds NaN or infinity."""
    return np.where(np.isfinite(logits).all(axis=1), logits.argmax(axis=1), -1)


def compare(fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray) -> Comparison:
    fp32, int8 = predictions(fp32_logits), predictions(int8_logits)
    return Comparison(images=len(labels), fp32_correct=int((fp32 == labels).sum()),
                      int8_correct=int((int8 == labels).sum()), agreeing=int((fp32 == int8).sum()))


def int8_gate(comparison: Comparison, *, model_id: str) -> Int8Gate:
    """The gate's verdict on a comparison over test images, as the card records it."""
    return Int8Gate(model_id=model_id, images=comparison.images, split="test",
                    fp32_accuracy=comparison.fp32_accuracy, int8_accuracy=comparison.int8_accuracy,
                    top1_agreement=comparison.top1_agreement, max_accuracy_drop=MAX_ACCURACY_DROP,
                    min_top1_agreement=MIN_TOP1_AGREEMENT, cpu=cpu_description(),
                    passed=comparison.passes())


# The instruction-set extensions that decide which int8 kernels ONNX Runtime's MLAS can use.
INT8_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_description() -> str:
    """"AMD EPYC (x86_64; avx2; no avx512f, avx512_vnni, avx_vnni, amx_int8)", from /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return f"{platform.processor() or 'unknown CPU'} ({platform.machine()})"
    lines = cpuinfo.read_text().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    parts = [platform.machine(), ", ".join(f for f in INT8_CPU_FLAGS if f in flags)]
    lacking = [f for f in INT8_CPU_FLAGS if f not in flags]
    if lacking:
        parts.append(f"no {', '.join(lacking)}")
    return f"{name} ({'; '.join(p for p in parts if p)})"
