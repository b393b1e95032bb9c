"""The parity gate: PyTorch and ONNX Runtime, fed the same real test images, must agree.

The reference is PyTorch in fp32 on the CPU with TF32 off: plain IEEE fp32, no faster
approximation. Each ONNX Runtime provider then passes if:
- CPUExecutionProvider: max |logit difference| <= 1e-4 and every argmax agrees;
- CUDAExecutionProvider: max |logit difference| <= 1e-3 and every argmax agrees (GPU kernels
  sum in another order and cuDNN picks its own algorithms, so fp32 rounding differs more).
A provider is reported only when its session really runs on it: ONNX Runtime falls back to the
CPU silently when CUDA cannot start, and a CPU run must never be reported as CUDA parity.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
from tqdm import tqdm

from export.errors import ProviderUnavailable
from modelrepo.card import ParityReport, ProviderParity
from modelrepo.layout import INPUT_NAME, OUTPUT_NAME
from modelrepo.numerics import softmax
from modelrepo.providers import CPU, CUDA
from training.batches import eval_batches
from training.datasets import DatasetSpec, Split

LOGIT_TOLERANCE = {CPU: 1e-4, CUDA: 1e-3}


def default_providers() -> list[str]:
    """The CPU provider always; the CUDA provider too when a GPU is really present."""
    return [CPU, CUDA] if torch.cuda.is_available() else [CPU]


def onnx_session(path: Path | str, provider: str) -> ort.InferenceSession:
    """A session on `provider`, or ProviderUnavailable if ONNX Runtime fell back to another one."""
    if provider not in LOGIT_TOLERANCE:
        raise ValueError(f"no parity tolerance for provider {provider!r}; known: {', '.join(LOGIT_TOLERANCE)}")
    if provider == CUDA and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # use the CUDA/cuDNN libraries that came with the torch wheel
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the fallback warning is replaced by the error below
    session = ort.InferenceSession(str(path), options, providers=[provider, CPU] if provider != CPU else [CPU])
    running = session.get_providers()
    if running[0] != provider:
        raise ProviderUnavailable(
            f"asked ONNX Runtime for {provider} but the session runs on {running}; "
            f"no parity is reported for {provider} (is a GPU present, with CUDA and cuDNN libraries?)")
    return session


def provider_parity(provider: str, max_abs_logit_diff: float, max_abs_prob_diff: float,
                    argmax_agreement: float, onnx_accuracy: float) -> ProviderParity:
    tolerance = LOGIT_TOLERANCE[provider]
    # Written so that NaN (a broken graph) fails.
    passed = bool(max_abs_logit_diff <= tolerance and argmax_agreement == 1.0)
    return ProviderParity(provider=provider, max_abs_logit_diff=max_abs_logit_diff,
                          max_abs_prob_diff=max_abs_prob_diff, argmax_agreement=argmax_agreement,
                          onnx_accuracy=onnx_accuracy, logit_tolerance=tolerance, passed=passed)


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for the duration (it only matters on GPUs, where it is a 10-bit-mantissa shortcut)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class _Running:
    """Per-provider maxima and counts, accumulated batch by batch."""

    def __init__(self) -> None:
        self.max_logit = self.max_prob = 0.0
        self.agree = self.correct = 0

    def update(self, reference: np.ndarray, onnx: np.ndarray, labels: np.ndarray) -> None:
        # np.maximum propagates NaN, so one NaN logit (a broken graph) fails the gate.
        self.max_logit = float(np.maximum(self.max_logit, np.abs(reference - onnx).max()))
        self.max_prob = float(np.maximum(self.max_prob, np.abs(softmax(reference) - softmax(onnx)).max()))
        self.agree += int((reference.argmax(1) == onnx.argmax(1)).sum())
        self.correct += int((onnx.argmax(1) == labels).sum())


def parity_report(model: nn.Module, onnx_path: Path | str, split: Split, spec: DatasetSpec, *, model_id: str,
                  providers: Sequence[str] | None = None, batch_size: int = 250,
                  progress: bool = True) -> ParityReport:
    """Run the PyTorch reference and every provider over `split`, batch by batch, and compare."""
    providers = list(providers) if providers is not None else default_providers()
    sessions = {p: onnx_session(onnx_path, p) for p in providers}
    running = {p: _Running() for p in providers}
    model = model.eval().cpu()
    torch_correct, n = 0, len(split)
    with strict_fp32(), torch.inference_mode():
        for x, y in tqdm(eval_batches(split, spec, batch_size), total=-(-n // batch_size),
                         desc=f"parity {model_id}", unit="batch", disable=not progress,
                         file=sys.stderr, dynamic_ncols=True, mininterval=1.0):
            labels = y.numpy()
            reference = model(x).numpy()
            torch_correct += int((reference.argmax(1) == labels).sum())
            feed = {INPUT_NAME: x.numpy()}
            for provider, session in sessions.items():
                running[provider].update(reference, session.run([OUTPUT_NAME], feed)[0], labels)
    results = [provider_parity(p, r.max_logit, r.max_prob, r.agree / n, r.correct / n)
               for p, r in running.items()]
    return ParityReport(
        model_id=model_id, images=n, split="test",
        reference=f"PyTorch {torch.__version__} eager, fp32, TF32 off, CPU",
        torch_accuracy=torch_correct / n, providers=results,
        passed=bool(results) and all(r.passed for r in results))
