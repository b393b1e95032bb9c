"""Every registered architecture exports to ONNX and passes the parity gate (random weights, real images).

Each architecture is checked on the dataset(s) the train-all matrix trains it on. The ones
outside the matrix (DenseNet-169/201/264: the same code as DenseNet-121, and most of this
file's time) are checked on CIFAR-10 under the opt-in `extended` marker: `make test-all`.
"""

from __future__ import annotations

import pytest

from export.parity import CPU
from export.publish import publish_run
from modelrepo.card import read_card
from training.recipes import TRAIN_ALL
from training.registry import architectures

IMAGES = 24  # a few dozen real images: enough for parity, cheap for the DenseNets on two cores


def cases() -> list:
    trained = {arch: [d for a, d in TRAIN_ALL if a == arch] for arch, _ in TRAIN_ALL}
    in_matrix = [(arch, dataset) for arch in sorted(trained) for dataset in trained[arch]]
    outside = [pytest.param(arch, "cifar10", marks=pytest.mark.extended)
               for arch in sorted(architectures()) if arch not in trained]
    return in_matrix + outside


def case_id(case) -> str:
    arch, dataset = case.values if hasattr(case, "values") else case
    return f"{arch}-{dataset}"


@pytest.mark.slow
@pytest.mark.parametrize("arch, dataset", cases(), ids=[case_id(c) for c in cases()])
def test_exports_and_passes_parity(make_run, tmp_path, fixtures_dir, arch, dataset):
    folder = publish_run(make_run(arch, dataset), tmp_path / "models", data_dir=fixtures_dir,
                         parity_limit=IMAGES, providers=[CPU], progress=False)
    parity = read_card(folder).parity
    (cpu,) = parity.providers
    assert parity.passed and parity.images == IMAGES
    assert cpu.max_abs_logit_diff <= 1e-4 and cpu.argmax_agreement == 1.0
