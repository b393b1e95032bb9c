"""Every registered architecture builds for both input geometries, runs forward and backward,
and has the parameter count its specification implies."""

from __future__ import annotations

import pytest
import torch

from training.registry import architectures, build_model

GEOMETRIES = {"mnist": (1, 28), "cifar10": (3, 32)}


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn(c: int) -> int:
    return 2 * c


def inception_a(cin: int) -> int:
    return (conv(cin, 16, 1) + conv(cin, 16, 1) + conv(16, 24, 5) + conv(cin, 16, 1)
            + conv(16, 24, 3) + conv(24, 24, 3) + conv(cin, 24, 1))


def residual_block(c: int) -> int:
    return 2 * conv(c, c, 3, bias=False) + 2 * bn(c)


def seed_net_parameters(arch: str, c: int, size: int) -> int:
    """Parameter counts written out from the seed notes' layer specifications."""
    after_two_5x5_pools = ((size - 4) // 2 - 4) // 2  # 28 -> 4, 32 -> 5
    if arch == "cnn":
        return conv(c, 16, 3) + conv(16, 32, 3) + fc(32 * (size // 4) ** 2, 128) + fc(128, 10)
    if arch == "lenet5":
        return conv(c, 16, 5) + conv(16, 32, 5) + fc(32 * after_two_5x5_pools ** 2, 32) + fc(32, 10)
    if arch == "inception":
        return (conv(c, 10, 5) + inception_a(10) + conv(88, 20, 5) + inception_a(20)
                + fc(88 * after_two_5x5_pools ** 2, 10))
    if arch in ("residual", "preact-residual"):
        return (conv(c, 16, 5) + residual_block(16) + conv(16, 32, 5) + residual_block(32)
                + fc(32 * after_two_5x5_pools ** 2, 10))
    if arch == "nin":
        widths = [(c, 192, 5), (192, 160, 1), (160, 96, 1), (96, 192, 5), (192, 192, 1),
                  (192, 192, 1), (192, 192, 3), (192, 192, 1), (192, 10, 1)]
        return sum(conv(i, o, k, bias=False) + bn(o) for i, o, k in widths)
    raise KeyError(arch)


# Published counts of the CIFAR-10 versions (kuangliu/pytorch-cifar), for the nets whose
# torchvision family is the same network.
PUBLISHED_CIFAR_PARAMETERS = {"resnet18": 11_173_962, "vgg16": 14_728_266}

ALL = sorted(architectures())


@pytest.mark.parametrize("dataset", GEOMETRIES)
@pytest.mark.parametrize("arch", ALL)
def test_forward_and_backward(arch: str, dataset: str) -> None:
    c, size = GEOMETRIES[dataset]
    torch.manual_seed(0)
    model = build_model(arch, c, size, 10).train()
    x = torch.randn(4, c, size, size)
    logits = model(x)
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    assert model(x[:1]).shape == (1, 10), "a single image must work in eval mode (BatchNorm)"


@pytest.mark.parametrize("dataset", GEOMETRIES)
@pytest.mark.parametrize("arch", ["cnn", "lenet5", "inception", "residual", "preact-residual", "nin"])
def test_seed_nets_match_their_specification(arch: str, dataset: str) -> None:
    c, size = GEOMETRIES[dataset]
    model = build_model(arch, c, size, 10)
    assert sum(p.numel() for p in model.parameters()) == seed_net_parameters(arch, c, size)


@pytest.mark.parametrize("arch", sorted(PUBLISHED_CIFAR_PARAMETERS))
def test_cifar_versions_match_published_counts(arch: str) -> None:
    model = build_model(arch, 3, 32, 10)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_CIFAR_PARAMETERS[arch]


def test_cifar_stems_keep_full_resolution() -> None:
    """The 3x3 stride-1 stem: the first block sees 32x32, not the 8x8 an ImageNet stem leaves."""
    model = build_model("resnet18", 3, 32, 10)
    shapes = []
    model.layer1.register_forward_hook(lambda module, inputs, output: shapes.append(output.shape))
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert shapes[0][-2:] == (32, 32)


def test_registry_names_the_whole_matrix() -> None:
    from training.recipes import TRAIN_ALL

    names = set(ALL)
    assert {a for a, _ in TRAIN_ALL} <= names
    assert {"densenet169", "densenet201", "densenet264", "preact-resnet18"} <= names


def test_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown architecture 'resnet19'"):
        build_model("resnet19", 3, 32, 10)


def test_every_architecture_module_registers_something() -> None:
    from training.architectures import ARCHITECTURE_MODULES

    registered_by = {arch.factory.__module__ for arch in architectures().values()}
    silent = [m.__name__ for m in ARCHITECTURE_MODULES if m.__name__ not in registered_by]
    assert not silent, f"modules that register no architecture: {silent}"
    assert len(ARCHITECTURE_MODULES) >= 6
