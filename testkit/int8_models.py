"""INT8 variants of the committed models, quantized for the tests on the real fixture images.

Shared by the export and service tests: the committed fp32 model is copied into a test repository
and quantized by the real `export.quantize` on the fixture training images (calibration and
choice) and gated on the fixture test images (500 of each dataset).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from export.quantize import LabelledImages, quantize_model
from modelrepo.card import read_card
from training.datasets import load_split

COMMITTED_MODELS = Path(__file__).resolve().parent.parent / "models"
CALIBRATION_IMAGES = 200
SELECTION_IMAGES = 300


def fixture_images(dataset: str, train: bool, fixtures_dir: Path) -> LabelledImages:
    split = load_split(dataset, train=train, data_dir=fixtures_dir, download=False)
    return LabelledImages(split.images.numpy(), split.labels.numpy())


def copy_committed(model_id: str, repo: Path) -> Path:
    """repo/<model_id>/: a copy of the committed fp32 model, free to quantize beside."""
    return Path(shutil.copytree(COMMITTED_MODELS / model_id, repo / model_id))


def quantize_committed(model_id: str, repo: Path, fixtures_dir: Path, **options) -> Path:
    """repo/<model_id>-int8/ from a copy of the committed model; `options` go to quantize_model."""
    folder = copy_committed(model_id, repo) if not (repo / model_id).exists() else repo / model_id
    dataset = read_card(folder).dataset
    options.setdefault("train", fixture_images(dataset, True, fixtures_dir))
    options.setdefault("test", fixture_images(dataset, False, fixtures_dir))
    options.setdefault("calibration_images", CALIBRATION_IMAGES)
    options.setdefault("selection_images", SELECTION_IMAGES)
    return quantize_model(folder, repo, progress=False, **options)
