"""The training loop on real fixture data: it learns, it writes its run folder, it resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training.loop
from training import run_files
from training.datasets import load_split
from training.loop import train
from training.recipes import Recipe

# Small and quick: 2,000 real training digits, 5 epochs of the 2-conv CNN.
QUICK = Recipe(epochs=5, batch_size=64, lr=0.05, augmentation="none")


def train_until_first_checkpoint(monkeypatch, *args, **kwargs) -> None:
    """Run `train` until it has written its first epoch's checkpoint, then interrupt it."""
    real_checkpoint = training.loop._checkpoint

    def crash_after_first_epoch(*a, **kw):
        real_checkpoint(*a, **kw)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(training.loop, "_checkpoint", crash_after_first_epoch)
        train(*args, **kwargs)


@pytest.fixture(scope="module")
def mnist(fixtures_dir: Path):
    return (load_split("mnist", True, fixtures_dir, download=False),
            load_split("mnist", False, fixtures_dir, download=False))


@pytest.fixture(scope="module")
def quick_run(mnist, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    run = train("cnn", "mnist", QUICK, runs_dir=runs, train_split=mnist[0], test_split=mnist[1],
                progress=False)
    return runs / "cnn-mnist", run


def test_a_short_real_run_learns_digits(quick_run) -> None:
    _, run = quick_run
    # 500 real test digits: chance is 10 %; a loop that does not learn stays near it.
    assert run.metrics["test_accuracy"] >= 0.93
    losses = [h["train_loss"] for h in run.metrics["history"]]
    assert losses[-1] < 0.5 * losses[0]


def test_a_model_trained_on_digit_robust_batches_still_learns(mnist, tmp_path: Path) -> None:
    # The heaviest digit augmentation: a short run must still learn the clean test digits.
    recipe = Recipe(epochs=6, batch_size=64, lr=0.05, augmentation="digit-robust")
    run = train("cnn", "mnist", recipe, runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1],
                progress=False)
    assert run.metrics["test_accuracy"] >= 0.9
    losses = [h["train_loss"] for h in run.metrics["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert run.metrics["recipe"]["augmentation"] == "digit-robust"


def test_the_run_folder_holds_weights_metrics_and_curves(quick_run) -> None:
    run_dir, run = quick_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_done"] == 5
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    assert metrics["recipe"] == QUICK.as_dict()
    assert metrics["device"].startswith("cpu") and metrics["versions"]["torch"] == torch.__version__
    assert metrics["wall_seconds"] > 0 and metrics["history"][0]["images_per_second"] > 0
    weights = load_file(str(run_dir / "weights.safetensors"))  # safetensors: no pickle involved
    assert set(weights) == set(run.model.state_dict())
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_run_resumes_to_the_same_weights(mnist, tmp_path: Path, monkeypatch) -> None:
    recipe = Recipe(epochs=2, batch_size=100, lr=0.05, augmentation="affine")
    kwargs = dict(train_split=mnist[0], test_split=mnist[1], progress=False)
    straight = train("cnn", "mnist", recipe, runs_dir=tmp_path / "straight", **kwargs)

    train_until_first_checkpoint(monkeypatch, "cnn", "mnist", recipe, runs_dir=tmp_path / "resumed", **kwargs)
    assert run_files.read_metrics(tmp_path / "resumed" / "cnn-mnist")["epochs_done"] == 1

    resumed = train("cnn", "mnist", recipe, runs_dir=tmp_path / "resumed", **kwargs)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_a_changed_recipe_starts_afresh(mnist, tmp_path: Path) -> None:
    kwargs = dict(runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1], progress=False)
    train("lenet5", "mnist", Recipe(epochs=1, batch_size=200, lr=0.05), **kwargs)
    again = train("lenet5", "mnist", Recipe(epochs=1, batch_size=250, lr=0.05), **kwargs)
    assert len(again.metrics["history"]) == 1
    assert again.metrics["recipe"]["batch_size"] == 250


def test_train_all_skips_only_runs_finished_with_the_current_recipe(quick_run) -> None:
    from dataclasses import replace

    from training.loop import is_trained

    run_dir, _ = quick_run
    assert is_trained(run_dir, QUICK)
    assert not is_trained(run_dir, replace(QUICK, epochs=6)), "a changed recipe makes the run stale"
    assert not is_trained(run_dir.parent / "lenet5-mnist", QUICK), "no run at all"


def test_a_run_resumed_elsewhere_records_both_devices(mnist, tmp_path: Path, monkeypatch) -> None:
    recipe = Recipe(epochs=2, batch_size=250, lr=0.05)
    kwargs = dict(runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1], progress=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train_until_first_checkpoint(monkeypatch, "lenet5", "mnist", recipe, **kwargs)
        torch.set_num_threads(1)
        resumed = train("lenet5", "mnist", recipe, **kwargs)
    finally:
        torch.set_num_threads(threads)
    assert "2 threads" in resumed.metrics["device"]
    assert "from epoch 2: cpu (" in resumed.metrics["device"] and "1 thread)" in resumed.metrics["device"]
