"""Training runs fabricated with random weights, and repositories published from them.

Shared by the export and service tests and by bench/service_benchmark.py: speed and parity do not depend
on the weights, so these stand in for trained runs wherever the tests need a real model file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training import run_files
from training.datasets import DATASETS
from training.recipes import model_id
from training.registry import build_model


def fabricate_run(runs_dir: Path, arch: str, dataset: str, *, seed: int = 0, **metrics) -> Path:
    """runs_dir/<id>/ with random weights and the smallest finished metrics.json the exporter reads."""
    spec = DATASETS[dataset]
    channels, size, _ = spec.input_shape
    torch.manual_seed(seed)
    model = build_model(arch, channels, size, len(spec.classes))
    run_id = model_id(arch, dataset)
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    run_files.save_weights(model, run_dir / run_files.WEIGHTS, {"id": run_id})
    metrics.setdefault("complete", True)
    run_files.write_metrics(run_dir, run_files.RunMetrics(id=run_id, arch=arch, dataset=dataset, **metrics))
    return run_dir


def publish_random_models(root: Path, models: list[tuple[str, str]], data_dir: Path, *,
                          parity_limit: int = 32) -> Path:
    """root/models/<id>/ for each (arch, dataset), through the real exporter and parity gate."""
    from export.publish import publish_run

    for arch, dataset in models:
        run = fabricate_run(root / "runs", arch, dataset, test_accuracy=1 / len(DATASETS[dataset].classes))
        publish_run(run, root / "models", data_dir=data_dir, parity_limit=parity_limit, progress=False)
    return root / "models"
