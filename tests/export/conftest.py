"""Export fixtures: training runs fabricated with random weights, and the real fixture test images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from training import run_files
from training.datasets import DATASETS, Split, load_split
from training.registry import build_model

MakeRun = Callable[..., Path]


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    """make_run(arch, dataset, **metrics) -> runs/<id>/ holding random weights and a minimal metrics.json."""
    def make(arch: str, dataset: str, *, seed: int = 0, **metrics) -> Path:
        spec = DATASETS[dataset]
        channels, size, _ = spec.input_shape
        torch.manual_seed(seed)
        model = build_model(arch, channels, size, len(spec.classes))
        run_id = f"{arch}-{dataset}"
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        run_files.save_weights(model, run_dir / run_files.WEIGHTS, {"id": run_id})
        run_files.write_metrics(run_dir, {"id": run_id, "arch": arch, "dataset": dataset, **metrics})
        return run_dir
    return make


@pytest.fixture(scope="session")
def fixture_test_split(fixtures_dir: Path) -> Callable[[str], Split]:
    """The 500 real test images of a dataset, as the training loader reads them."""
    cache: dict[str, Split] = {}

    def read(dataset: str) -> Split:
        if dataset not in cache:
            cache[dataset] = load_split(dataset, train=False, data_dir=fixtures_dir, download=False)
        return cache[dataset]
    return read
