"""Publish a trained run into the model repository: `runs/<id>/` -> `models/<id>/`.

What a run folder must hold: `weights.safetensors` (the state dict of
`training.registry.build_model(arch, C, H, num_classes)`) and `metrics.json`, a
`training.run_files.RunMetrics` record that says `"complete": true` (an unfinished run is
refused); the record's other figures are copied into the card where present.

Nothing reaches the repository unless the parity gate passes, and the folder appears whole or
not at all: everything is built in a temporary folder and swapped into place at the end.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import onnx
import torch.nn as nn

from export.errors import ParityGateFailed, RunNotReady
from export.model_folder import embed_metadata, install, sha256_file, write_model_files
from export.onnx_export import export_onnx, exporter_versions
from export.parity import parity_report
from modelrepo.card import (Card, ModelInput, ModelMetadata, ModelOutput, Preprocessing, TrainingSummary,
                            metadata_dict, read_card, write_card)
from modelrepo.layout import INPUT_NAME, MODEL_FILE, OUTPUT_NAME
from training import run_files
from training.averaging import with_test_time_augmentation
from training.datasets import DATASETS, Split, load_split
from training.registry import architectures, build_model
from training.run_files import RunMetrics

_SAFE_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


def read_run(run_dir: Path) -> RunMetrics:
    """The run's metrics, checked for what export needs; RunNotReady says what is missing."""
    run_dir = Path(run_dir)
    try:
        metrics = run_files.read_metrics(run_dir)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise RunNotReady(f"{run_dir / run_files.METRICS}: {err}") from None
    if metrics is None:
        raise RunNotReady(f"{run_dir}: no {run_files.METRICS}; is this a training run folder?")
    if not (run_dir / run_files.WEIGHTS).exists():
        raise RunNotReady(f"{run_dir}: no {run_files.WEIGHTS}")
    if not metrics.complete:
        raise RunNotReady(f"{run_dir}: still training ({metrics.epochs_done} epochs done); "
                          "export it when metrics.json says \"complete\": true")
    if not _SAFE_ID.fullmatch(metrics.id):
        raise RunNotReady(f"{run_dir}: id {metrics.id!r} is not a usable folder name")
    if metrics.dataset not in DATASETS:
        raise RunNotReady(f"{run_dir}: unknown dataset {metrics.dataset!r}")
    if metrics.arch not in architectures():
        raise RunNotReady(f"{run_dir}: unknown architecture {metrics.arch!r}")
    return metrics


def model_from_run(run_dir: Path, metrics: RunMetrics) -> nn.Module:
    """Rebuild the module from the registry, load the run's weights into it, and wrap it in the
    recipe's test-time augmentation: what is exported is what the run's figures measured."""
    spec = DATASETS[metrics.dataset]
    channels, size, _ = spec.input_shape
    model = build_model(metrics.arch, channels, size, len(spec.classes))
    try:
        run_files.load_weights(model, Path(run_dir) / run_files.WEIGHTS)
    except RuntimeError as err:  # load_state_dict: missing/unexpected keys, shape mismatch
        raise RunNotReady(f"{run_dir}: the weights do not fit {metrics.arch}: {err}") from err
    return with_test_time_augmentation(model, test_time_augmentation(metrics)).eval()


def test_time_augmentation(metrics: RunMetrics) -> str:
    return (metrics.recipe or {}).get("tta", "none")


def training_summary(metrics: RunMetrics) -> TrainingSummary:
    """The run's figures as the card keeps them."""
    return TrainingSummary(
        epochs=metrics.epochs_done or None, wall_seconds=metrics.wall_seconds,
        train_seconds=metrics.train_seconds, device=metrics.device, precision=metrics.precision,
        recipe=metrics.recipe, budget=metrics.budget,
        final_evaluation=msgspec.to_builtins(metrics.final_evaluation) if metrics.final_evaluation else None,
        git_commit=metrics.git_commit, parameters=metrics.parameters, finished=metrics.finished)


def model_metadata(metrics: RunMetrics, weights_sha256: str) -> ModelMetadata:
    """What travels with the model: embedded in the ONNX file, and the core of card.json."""
    spec = DATASETS[metrics.dataset]
    arch = architectures()[metrics.arch]
    return ModelMetadata(
        id=metrics.id, arch=metrics.arch, dataset=spec.name,
        description=f"{arch.summary} [{arch.paper}]",
        classes=list(spec.classes),
        input=ModelInput(name=INPUT_NAME, shape=list(spec.input_shape), dtype="float32", layout="NCHW"),
        output=ModelOutput(name=OUTPUT_NAME, shape=[len(spec.classes)]),
        preprocessing=Preprocessing(kind=spec.preprocessing, mean=list(spec.mean), std=list(spec.std)),
        test_time_augmentation=test_time_augmentation(metrics),
        test_accuracy=metrics.test_accuracy,
        weights_sha256=weights_sha256,
        training=training_summary(metrics),
        exporter=exporter_versions(),
        exported=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def publish_run(run_dir: Path, repo_dir: Path, *, data_dir: Path | None = None,
                parity_limit: int | None = None, providers: Sequence[str] | None = None,
                progress: bool = True) -> Path:
    """Export `run_dir`, pass the parity gate on the real test split, and write `repo_dir/<id>/`.

    `data_dir` holds the datasets (default: $DATA_DIR); `parity_limit` checks only the first N
    test images (default: all); `providers` are the ONNX Runtime providers the gate checks
    (default: CPU, plus CUDA when a GPU is present). Returns the published folder. Raises
    RunNotReady, ProviderUnavailable or ParityGateFailed (with `.report`), writing nothing.
    """
    run_dir, repo_dir = Path(run_dir), Path(repo_dir)
    if parity_limit is not None and parity_limit < 1:
        raise ValueError(f"parity_limit must be at least 1, got {parity_limit}")
    metrics = read_run(run_dir)
    spec = DATASETS[metrics.dataset]
    model = model_from_run(run_dir, metrics)
    test = load_split(spec.name, train=False, data_dir=data_dir, download=False)
    if parity_limit is not None:
        test = Split(test.images[:parity_limit], test.labels[:parity_limit])

    with tempfile.TemporaryDirectory(prefix=f"export-{metrics.id}-") as tmp:
        staged = Path(tmp) / metrics.id
        onnx_path = staged / MODEL_FILE
        onnx_path.parent.mkdir(parents=True)
        metadata = model_metadata(metrics, sha256_file(run_dir / run_files.WEIGHTS))
        export_onnx(model, spec.input_shape, onnx_path, metadata_dict(metadata))
        report = parity_report(model, onnx_path, test, spec, model_id=metrics.id,
                               providers=providers, progress=progress)
        if not report.passed:
            raise ParityGateFailed(report)
        write_model_files(staged, metadata, parity=report)
        return install(staged, repo_dir / metrics.id)


def redescribe(folder: Path) -> Card:
    """Bring a published model's words up to date without re-exporting it: the registry's
    current summary and paper, in the card and embedded anew in the ONNX file. The graph is
    left byte for byte as it was, so the gate's report still holds; the file's sha256 and
    size are updated. All or nothing, as publishing is."""
    folder = Path(folder)
    card = read_card(folder)
    arch = architectures()[card.arch]
    card = msgspec.structs.replace(card, description=f"{arch.summary} [{arch.paper}]")
    with tempfile.TemporaryDirectory(prefix=f"redescribe-{card.id}-") as tmp:
        staged = Path(tmp) / card.id
        shutil.copytree(folder, staged)
        onnx_path = staged / MODEL_FILE
        proto = onnx.load(str(onnx_path))
        embed_metadata(proto, metadata_dict(card))
        onnx.save(proto, str(onnx_path))
        card = msgspec.structs.replace(card, onnx_sha256=sha256_file(onnx_path),
                                       onnx_bytes=onnx_path.stat().st_size)
        write_card(staged, card)
        install(staged, folder)
    return card
