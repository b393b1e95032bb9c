"""Where things are in a model folder (`models/<id>/`, Triton's layout), and the graph's names."""

from __future__ import annotations

from pathlib import Path

CARD_FILE = "card.json"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
MODEL_VERSION = "1"  # the one version folder; Triton and the Open Inference Protocol name versions by it
MODEL_FILE = Path(MODEL_VERSION) / "model.onnx"  # one self-contained ONNX file

# The ONNX graph: `image` float32 [batch, C, H, W], already normalised; `logits` [batch, K].
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"


def model_folders(repository: Path) -> list[Path]:
    """One folder per model, sorted; hidden folders (an export in progress) are not models."""
    if not repository.is_dir():
        return []
    return [folder for folder in sorted(repository.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")]
