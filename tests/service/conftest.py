"""Service fixtures: model repositories published by the real exporter, and real servers.

`random_repo` holds random-weight models published by the real exporter (testkit/random_runs.py;
tests may import torch, the service may not). `server` is one real server on it, shared.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from testkit.live_server import REPO_ROOT, Server, running_server
from testkit.random_runs import publish_random_models


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


@pytest.fixture(scope="session")
def starter_repo() -> Path:
    """The committed starter models (models/): real weights, so answers can be checked against the truth."""
    return REPO_ROOT / "models"


@pytest.fixture(scope="session")
def v2_server(starter_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on the starter models, shared by the Open Inference Protocol tests (HTTP and gRPC)."""
    with running_server(starter_repo, tmp_path_factory.mktemp("v2-server-logs")) as srv:
        yield srv
