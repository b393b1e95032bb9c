"""Which recipe row a run gets: the full (GPU-length) rows, the CPU-budget rows, and `auto`."""

from __future__ import annotations

import pytest

from training.recipes import CPU_RECIPES, DEFAULTS, RECIPES, recipe_for


@pytest.mark.parametrize("arch", ["alexnet", "vgg16", "resnet18", "preact-resnet18"])
def test_the_headline_cifar_nets_have_a_cpu_row_with_ema_and_flip_averaging(arch) -> None:
    cpu = recipe_for(arch, "cifar10", "cpu")
    assert cpu is CPU_RECIPES[(arch, "cifar10")]
    assert cpu.epochs < RECIPES[(arch, "cifar10")].epochs, "a CPU row is shorter than the GPU row"
    assert 0 < cpu.ema < 1 and cpu.tta == "hflip" and cpu.label_smoothing > 0


def test_auto_takes_the_cpu_row_only_without_a_gpu() -> None:
    assert recipe_for("resnet18", "cifar10", "auto", has_gpu=False) is CPU_RECIPES[("resnet18", "cifar10")]
    assert recipe_for("resnet18", "cifar10", "auto", has_gpu=True) is RECIPES[("resnet18", "cifar10")]
    assert recipe_for("resnet18", "cifar10", "full") is RECIPES[("resnet18", "cifar10")]


def test_pairs_without_a_cpu_row_keep_their_full_row_or_the_dataset_default() -> None:
    assert recipe_for("nin", "cifar10", "cpu") is RECIPES[("nin", "cifar10")]
    assert recipe_for("densenet169", "cifar10", "cpu") is DEFAULTS["cifar10"]


def test_unknown_budgets_and_datasets_are_named() -> None:
    with pytest.raises(ValueError, match="unknown budget 'tiny'"):
        recipe_for("cnn", "mnist", "tiny")
    with pytest.raises(KeyError, match="unknown dataset 'svhn'"):
        recipe_for("cnn", "svhn")
