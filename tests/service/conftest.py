"""Service fixtures: model repositories published by the real exporter, and real servers.

`random_repo` holds random-weight models published with `export.publish.publish_run`
(tests may import torch; the service may not). `server` is one real server on it, shared.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import Server, running_server


def fabricate_run(runs_dir: Path, arch: str, dataset: str, seed: int = 0) -> Path:
    """A training run folder with random weights and the minimal metrics.json the exporter reads."""
    import torch

    from training import run_files
    from training.datasets import DATASETS
    from training.registry import build_model

    spec = DATASETS[dataset]
    channels, size, _ = spec.input_shape
    torch.manual_seed(seed)
    model = build_model(arch, channels, size, len(spec.classes))
    run_id = f"{arch}-{dataset}"
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    run_files.save_weights(model, run_dir / run_files.WEIGHTS, {"id": run_id})
    run_files.write_metrics(run_dir, {"id": run_id, "arch": arch, "dataset": dataset,
                                      "test_accuracy": 1 / len(spec.classes)})
    return run_dir


def publish_random_models(root: Path, models: list[tuple[str, str]], data_dir: Path) -> Path:
    """root/models/<id>/ for each (arch, dataset), through the real exporter and parity gate."""
    from export.publish import publish_run

    for arch, dataset in models:
        run = fabricate_run(root / "runs", arch, dataset)
        publish_run(run, root / "models", data_dir=data_dir, parity_limit=32, progress=False)
    return root / "models"


@pytest.fixture(scope="session")
def random_repo(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    """cnn-mnist and lenet5-cifar10 with random weights. Treat as read-only (copy to change)."""
    return publish_random_models(tmp_path_factory.mktemp("random-repo"),
                                 [("cnn", "mnist"), ("lenet5", "cifar10")], fixtures_dir)


@pytest.fixture
def repo_copy(random_repo: Path, tmp_path: Path) -> Path:
    """A private copy of random_repo, free to damage."""
    return Path(shutil.copytree(random_repo, tmp_path / "models"))


@pytest.fixture(scope="session")
def server(random_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server on random_repo, with small limits so the error cases are cheap to hit."""
    with running_server(random_repo, tmp_path_factory.mktemp("server-logs"),
                        max_upload_bytes=1_000_000, max_image_pixels=4_000_000, max_batch_images=8) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
