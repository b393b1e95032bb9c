"""The two datasets: what each one is (shape, normalisation, classes) and how to read it.

Each split is read once into uint8 tensors, N×C×H×W, with int64 labels. Batching and
augmentation happen later, on the training device (see `training.batches`).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    # How the service turns an uploaded image into this input: "digit" (MNIST's own
    # centring procedure) or "photo" (plain resize).
    preprocessing: str


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        input_shape=(1, 28, 28),
        mean=(0.1307,),  # the training set's pixel statistics after /255
        std=(0.3081,),
        classes=tuple(str(d) for d in range(10)),
        preprocessing="digit",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        input_shape=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
        preprocessing="photo",
    ),
}


class DatasetNotFound(FileNotFoundError):
    """The dataset is neither on disk nor downloadable."""


@dataclass
class Split:
    images: torch.Tensor  # uint8, N×C×H×W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


def default_data_dir() -> Path:
    """`DATA_DIR` if set, else `./data`."""
    return Path(os.environ.get("DATA_DIR", "data"))


def load_split(dataset: str, train: bool, data_dir: Path | None = None,
               download: bool = True) -> Split:
    """Read one split of `dataset` from `data_dir`, downloading it first if missing."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if dataset == "mnist":
        return _load_mnist(data_dir, train, download)
    if dataset == "cifar10":
        return _load_cifar10(data_dir, train, download)
    raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


# --- MNIST: torchvision's own loader, reading MNIST/raw under data_dir ---------------------

def _load_mnist(data_dir: Path, train: bool, download: bool) -> Split:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(root=str(data_dir), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found" when offline and absent
        raise DatasetNotFound(
            f"MNIST not found under {data_dir}/MNIST/raw and could not be downloaded "
            f"({err}); set DATA_DIR to a folder that holds MNIST/raw") from err
    return Split(images=ds.data.unsqueeze(1).contiguous(), labels=ds.targets.long())


# --- CIFAR-10: the official *binary* version ---------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_TGZ_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then R, G, B planes of 32×32


def _cifar10_files(train: bool) -> list[str]:
    return [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]


def _load_cifar10(data_dir: Path, train: bool, download: bool) -> Split:
    folder = data_dir / CIFAR10_DIR
    files = [folder / name for name in _cifar10_files(train)]
    if not all(f.exists() for f in files):
        if not download:
            raise DatasetNotFound(f"CIFAR-10 binary files not found under {folder}")
        _download_cifar10(data_dir)
    return read_cifar10_bin(files)


def read_cifar10_bin(files: list[Path]) -> Split:
    """Parse CIFAR-10 binary batch files (3,073-byte records) into one Split."""
    raw = []
    for f in files:
        data = np.fromfile(f, dtype=np.uint8)
        if data.size % CIFAR10_RECORD:
            raise ValueError(f"{f}: size {data.size} is not a multiple of {CIFAR10_RECORD} bytes")
        raw.append(data.reshape(-1, CIFAR10_RECORD))
    records = np.concatenate(raw)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    return Split(images=images, labels=labels)


def _download_cifar10(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / "cifar-10-binary.tar.gz"
    try:
        print(f"downloading {CIFAR10_URL} -> {archive}")
        urllib.request.urlretrieve(CIFAR10_URL, archive)
    except OSError as err:
        raise DatasetNotFound(
            f"CIFAR-10 not found under {data_dir / CIFAR10_DIR} and the download failed "
            f"({err}); set DATA_DIR to a folder that holds {CIFAR10_DIR}/") from err
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != CIFAR10_TGZ_MD5:
        archive.unlink()
        raise DatasetNotFound(f"{archive}: md5 {digest} != expected {CIFAR10_TGZ_MD5}")
    with tarfile.open(archive) as tar:
        tar.extractall(data_dir, filter="data")
    archive.unlink()
