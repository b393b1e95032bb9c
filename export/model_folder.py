"""A model folder on disk, without torch: the ONNX file's digest and embedded metadata, the Triton
files and card written beside it, and the swap into `models/` that makes publishing all-or-nothing.

Both ways of publishing use it: `export.publish` (fp32, from a training run) and `export.quantize`
(int8, from a published fp32 model).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import msgspec
import onnx

from export.triton import config_pbtxt, labels_txt
from modelrepo.card import Card, ModelMetadata, ParityReport, Quantization, write_card
from modelrepo.layout import CONFIG_FILE, LABELS_FILE, MODEL_FILE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def embed_metadata(proto: onnx.ModelProto, metadata: dict) -> None:
    """Store each entry in `metadata_props` as JSON text, so every value reads back with its type."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))


def read_metadata(path: Path) -> dict:
    """The metadata embedded in an ONNX file, each value decoded from JSON."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


def write_model_files(folder: Path, metadata: ModelMetadata, *, parity: ParityReport | None = None,
                      quantization: Quantization | None = None) -> Card:
    """config.pbtxt, labels.txt and card.json beside an exported `1/model.onnx`."""
    onnx_path = folder / MODEL_FILE
    (folder / CONFIG_FILE).write_text(config_pbtxt(metadata.id, tuple(metadata.input.shape), len(metadata.classes)))
    (folder / LABELS_FILE).write_text(labels_txt(metadata.classes))
    card = Card(**msgspec.structs.asdict(metadata), onnx_sha256=sha256_file(onnx_path),
                onnx_bytes=onnx_path.stat().st_size, parity=parity, quantization=quantization)
    write_card(folder, card)
    return card


def install(staged: Path, target: Path) -> Path:
    """Swap the finished folder into place; an older version is replaced only once the new one is whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial"
    previous = target.parent / f".{target.name}.previous"
    for leftover in (partial, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(staged, partial)  # the temporary folder may be on another filesystem
    if target.exists():
        target.rename(previous)
    partial.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return target
