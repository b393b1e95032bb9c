"""Export fixtures: training runs fabricated with random weights, and the real fixture test images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from testkit.random_runs import fabricate_run

from training.datasets import Split, load_split

MakeRun = Callable[..., Path]


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    """make_run(arch, dataset, **metrics) -> runs/<id>/ holding random weights and a minimal metrics.json."""
    def make(arch: str, dataset: str, *, seed: int = 0, **metrics) -> Path:
        return fabricate_run(tmp_path / "runs", arch, dataset, seed=seed, **metrics)
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
