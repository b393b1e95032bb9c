"""Shared test fixtures: where the real-data fixtures live."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Small real MNIST and CIFAR-10 files in their native formats (see fixtures/make_fixtures.py)."""
    return FIXTURES


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
