"""The parity gate: it passes a faithful export, and fails a tampered one, a broken one, and a false CUDA claim."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch

from export.errors import ProviderUnavailable
from export.onnx_export import export_onnx
from export.parity import (CPU, CUDA, LOGIT_TOLERANCE, ParityReport, onnx_session, provider_parity,
                           parity_report)
from training.datasets import DATASETS, Split
from training.registry import build_model

from onnx_tampering import perturb_onnx_weights  # tests/export/onnx_tampering.py

IMAGES = 48


@pytest.fixture(scope="module")
def exported_residual(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model("residual", 1, 28, 10).eval()
    path = tmp_path_factory.mktemp("parity") / "model.onnx"
    export_onnx(model, (1, 28, 28), path, {"id": "residual-mnist"})
    return model, path


@pytest.fixture
def residual_mnist(exported_residual, tmp_path, fixture_test_split):
    """A fresh copy of the model and its export for each test, which may tamper with either."""
    model, path = exported_residual
    path_copy = tmp_path / "model.onnx"
    shutil.copyfile(path, path_copy)
    split = fixture_test_split("mnist")
    return copy.deepcopy(model), path_copy, Split(split.images[:IMAGES], split.labels[:IMAGES])


def check(model, path, split, **kwargs) -> ParityReport:
    return parity_report(model, path, split, DATASETS["mnist"], model_id="residual-mnist",
                         batch_size=16, progress=False, **kwargs)


def test_faithful_export_passes_on_the_cpu_provider(residual_mnist):
    model, path, split = residual_mnist
    report = check(model, path, split, providers=[CPU])
    (cpu,) = report.providers
    assert report.passed and cpu.passed
    assert report.images == IMAGES
    assert cpu.provider == CPU and cpu.logit_tolerance == 1e-4
    assert cpu.max_abs_logit_diff <= 1e-4 and cpu.argmax_agreement == 1.0
    assert cpu.onnx_accuracy == report.torch_accuracy


def test_weights_perturbed_after_export_fail_the_gate(residual_mnist):
    model, path, split = residual_mnist
    perturb_onnx_weights(path, lambda w: w + np.float32(0.05) * np.abs(w).mean())
    report = check(model, path, split, providers=[CPU])
    assert not report.passed
    assert report.providers[0].max_abs_logit_diff > LOGIT_TOLERANCE[CPU]
    assert "FAIL" in report.summary()


def test_a_pytorch_model_changed_after_export_fails_the_gate(residual_mnist):
    model, path, split = residual_mnist
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    assert not check(model, path, split, providers=[CPU]).passed


def test_nan_logits_fail_the_gate(residual_mnist):
    model, path, split = residual_mnist
    perturb_onnx_weights(path, lambda w: np.full_like(w, np.nan))
    report = check(model, path, split, providers=[CPU])
    assert not report.passed
    assert np.isnan(report.providers[0].max_abs_logit_diff)


def test_cuda_is_reported_only_when_the_session_really_runs_on_it(residual_mnist):
    """ONNX Runtime falls back to the CPU silently; the gate must not call that CUDA parity."""
    model, path, split = residual_mnist
    if torch.cuda.is_available():
        report = check(model, path, split, providers=[CPU, CUDA])
        assert [p.provider for p in report.providers] == [CPU, CUDA]
        assert onnx_session(path, CUDA).get_providers()[0] == CUDA
        assert report.providers[1].logit_tolerance == 1e-3 and report.passed
    else:
        with pytest.raises(ProviderUnavailable, match="CPUExecutionProvider"):
            check(model, path, split, providers=[CPU, CUDA])


def test_unknown_provider_is_refused(residual_mnist):
    _, path, _ = residual_mnist
    with pytest.raises(ValueError, match="no parity tolerance"):
        onnx_session(path, "TensorrtExecutionProvider")


def test_argmax_disagreement_fails_even_within_the_logit_tolerance():
    def measured(logit_diff: float, agreement: float) -> bool:
        return provider_parity(CPU, max_abs_logit_diff=logit_diff, max_abs_prob_diff=1e-5,
                               argmax_agreement=agreement, onnx_accuracy=0.99).passed

    assert measured(5e-5, 1.0)
    assert not measured(5e-5, 0.9999)
    assert not measured(1.1e-4, 1.0)
    assert not measured(float("nan"), 1.0), "a NaN logit (a broken graph) fails"


def test_report_round_trips_through_the_card_encoding(residual_mnist):
    model, path, split = residual_mnist
    report = check(model, path, split, providers=[CPU])
    as_json = msgspec.json.decode(msgspec.json.encode(report))
    assert as_json["passed"] is True and as_json["providers"][0]["passed"] is True
    assert msgspec.json.decode(msgspec.json.encode(report), type=ParityReport) == report
