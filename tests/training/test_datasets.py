"""The loaders read the real file formats (MNIST IDX via torchvision, CIFAR-10 binary records)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.datasets import DATASETS, DatasetNotFound, load_split, read_cifar10_bin


def test_mnist_fixture_reads_through_torchvision(fixtures_dir: Path) -> None:
    test = load_split("mnist", train=False, data_dir=fixtures_dir, download=False)
    train = load_split("mnist", train=True, data_dir=fixtures_dir, download=False)
    assert test.images.shape == (500, 1, 28, 28) and test.images.dtype == torch.uint8
    assert train.images.shape == (2000, 1, 28, 28)
    # The first labels of the real files (MNIST's README: first training label 5, first test label 7).
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    # Digits are white ink on black: mostly background, a bright stroke.
    assert test.images.float().mean() / 255 == pytest.approx(0.13, abs=0.02)
    assert int(test.images.max()) == 255


def test_cifar10_fixture_reads_binary_records(fixtures_dir: Path) -> None:
    test = load_split("cifar10", train=False, data_dir=fixtures_dir, download=False)
    train = load_split("cifar10", train=True, data_dir=fixtures_dir, download=False)
    assert test.images.shape == (500, 3, 32, 32) and test.images.dtype == torch.uint8
    assert len(train) == 500  # 100 records from each of the five training batches
    # The official test order begins cat, ship, ship, airplane, frog.
    assert test.labels[:5].tolist() == [3, 8, 8, 0, 6]
    names = (fixtures_dir / "cifar-10-batches-bin" / "batches.meta.txt").read_text().split()
    assert tuple(names) == DATASETS["cifar10"].classes


def test_cifar10_planes_are_red_green_blue(fixtures_dir: Path) -> None:
    """Record layout: label byte, then 1024 red, 1024 green, 1024 blue bytes."""
    raw = (fixtures_dir / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()[:3073]
    split = read_cifar10_bin([fixtures_dir / "cifar-10-batches-bin" / "test_batch.bin"])
    first = split.images[0]
    assert split.labels[0] == raw[0]
    assert first[0, 0, :4].tolist() == list(raw[1:5])  # red plane, first row
    assert first[2, 31, 31] == raw[3072]  # blue plane, last pixel


def test_truncated_cifar_file_is_rejected(tmp_path: Path, fixtures_dir: Path) -> None:
    bad = tmp_path / "test_batch.bin"
    bad.write_bytes((fixtures_dir / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a multiple of 3073"):
        read_cifar10_bin([bad])


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_missing_data_without_download_says_where_it_looked(dataset: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match=str(tmp_path)):
        load_split(dataset, train=False, data_dir=tmp_path, download=False)
