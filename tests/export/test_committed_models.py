"""The starter set committed in models/: intact, self-consistent, and as accurate as its cards claim.

A fresh clone serves these with no training, no GPU and no network, so each one is checked the
way the service will use it: ONNX Runtime alone, preprocessing read from the card.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.onnx_export import read_metadata, sha256_file
from modelrepo.card import metadata_dict, read_card
from modelrepo.layout import MODEL_FILE
from training.datasets import DATASETS
from modelrepo.starter import GIT_ONNX_BUDGET_BYTES, STARTER_SET

ROOT = Path(__file__).parents[2]
MODELS = ROOT / "models"
FULL_TEST_SET = 10_000  # both MNIST and CIFAR-10


def committed_models() -> list[Path]:
    """Model folders tracked by git (what a fresh clone has); every folder outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "models"], cwd=ROOT, capture_output=True,
                                text=True, check=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return sorted(p.parent for p in MODELS.glob("*/card.json"))
    return sorted({ROOT / "models" / Path(f).parts[1] for f in listed if f.endswith("/card.json")})


COMMITTED = committed_models()


@pytest.mark.parametrize("model", STARTER_SET)
def test_the_starter_model_is_committed(model):
    assert model in {p.name for p in COMMITTED}, (
        f"{model} is not in git: make train MODEL=... DATASET=..., make export MODEL={model}, commit models/{model}")


def test_git_holds_the_starter_set_and_nothing_else_within_the_budget():
    sizes = {p.name: (p / MODEL_FILE).stat().st_size for p in COMMITTED}
    assert set(sizes) == set(STARTER_SET), "models/ in git must be the starter set (modelrepo/starter.py)"
    assert sum(sizes.values()) <= GIT_ONNX_BUDGET_BYTES


def test_gitignore_keeps_every_other_model_out_of_git():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "models/resnet18-cifar10/card.json",
                              *(f"models/{m}/card.json" for m in STARTER_SET)],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == ["models/resnet18-cifar10/card.json"], "a model outside the starter set must be ignored"


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: p.name)
def test_onnx_file_is_the_one_its_card_describes(folder):
    card = read_card(folder)
    onnx_path = folder / MODEL_FILE
    assert sha256_file(onnx_path) == card.onnx_sha256
    assert onnx_path.stat().st_size == card.onnx_bytes
    assert read_metadata(onnx_path) == metadata_dict(card)
    spec = DATASETS[card.dataset]
    assert card.classes == list(spec.classes)
    assert (card.preprocessing.kind, card.preprocessing.mean, card.preprocessing.std) == (
        spec.preprocessing, list(spec.mean), list(spec.std))


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: p.name)
def test_card_carries_its_passed_gate_on_the_full_test_set(folder):
    card = read_card(folder)
    if card.precision == "int8":  # the int8 gate replaces parity (export/int8_gate.py)
        gate = card.quantization.gate
        assert gate.passed and gate.images == FULL_TEST_SET and gate.int8_accuracy == card.test_accuracy
        assert card.quantization.calibration.split == "train"
        return
    parity = card.parity
    assert parity.passed and parity.images == FULL_TEST_SET
    cpu = next(p for p in parity.providers if p.provider == "CPUExecutionProvider")
    assert cpu.max_abs_logit_diff <= 1e-4 and cpu.argmax_agreement == 1.0
    # The exported graph reproduces the accuracy the training run measured on the same 10,000 images.
    assert cpu.onnx_accuracy == pytest.approx(card.test_accuracy, abs=0.005)


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: p.name)
def test_reaches_its_claimed_accuracy_on_real_fixture_images(folder, fixture_test_split):
    card = read_card(folder)
    split = fixture_test_split(card.dataset)
    mean = np.array(card.preprocessing.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.array(card.preprocessing.std, np.float32).reshape(1, -1, 1, 1)
    x = ((split.images.numpy().astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    session = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"image": x[i:i + 100]})[0] for i in range(0, len(x), 100)])
    accuracy = float((logits.argmax(1) == split.labels.numpy()).mean())
    claimed = card.test_accuracy
    # 500 images estimate the claim to within a binomial standard error; allow three of them.
    margin = 3 * math.sqrt(claimed * (1 - claimed) / len(x))
    assert accuracy >= claimed - margin, f"{accuracy:.4f} on the fixture vs {claimed:.4f} claimed"
    if card.dataset == "mnist":
        assert accuracy >= 0.97
