"""The weight average (EMA) and test-time flip averaging."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from training.averaging import FlipAveraged, WeightAverage, with_test_time_augmentation


def test_the_average_follows_the_weights_by_its_decay() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    average = WeightAverage(net, decay=0.9)
    before = average.model[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net(torch.randn(8, 4))  # a training-mode pass moves BatchNorm's statistics and step counter
    average.update(net)
    weight = 1 - min(0.9, 2 / 11)  # the first update's ramped decay
    torch.testing.assert_close(average.model[0].weight, before + weight * 1.0)
    assert average.model[1].num_batches_tracked == net[1].num_batches_tracked == 1
    torch.testing.assert_close(average.model[1].running_mean, weight * net[1].running_mean)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_after_many_updates_the_decay_is_the_configured_one() -> None:
    average = WeightAverage(nn.Linear(2, 2), decay=0.997)
    for _ in range(5000):
        average.updates += 1
    assert average.effective_decay() == 0.997


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_zero_one_is_refused(decay) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        WeightAverage(nn.Linear(2, 2), decay)


def test_flip_averaging_is_the_mean_over_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(2, 3, 8, 8)
    net(x)
    wrapped = with_test_time_augmentation(net, "hflip")
    assert isinstance(wrapped, FlipAveraged)
    expected = (net(x) + net(x.flip(3))) / 2
    torch.testing.assert_close(wrapped(x), expected)
    torch.testing.assert_close(wrapped(x.flip(3)), wrapped(x), msg="a mirrored image gets the same answer")
    assert not torch.allclose(net(x), expected), "the net alone is not flip-invariant"


def test_no_augmentation_returns_the_net_and_unknown_kinds_are_named() -> None:
    net = nn.Linear(2, 2)
    assert with_test_time_augmentation(net, "none") is net
    with pytest.raises(ValueError, match="unknown test-time augmentation 'crops'"):
        with_test_time_augmentation(net, "crops")
