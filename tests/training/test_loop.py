"""The training loop on real fixture data: it learns, it writes its run folder, it resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import run_files
from training.datasets import load_split
from training.devices import cpu_model
from training.loop import TrainingDiverged, device_history, train
from training.recipes import Recipe

# Small and quick: 2,000 real training digits, 5 epochs of the 2-conv CNN.
QUICK = Recipe(epochs=5, batch_size=64, lr=0.05, augmentation="none")


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
    assert run.metrics.test_accuracy >= 0.93
    losses = [h.train_loss for h in run.metrics.history]
    assert losses[-1] < 0.5 * losses[0]


def test_a_model_trained_on_digit_robust_batches_still_learns(mnist, tmp_path: Path) -> None:
    # The heaviest digit augmentation: a short run must still learn the clean test digits.
    recipe = Recipe(epochs=6, batch_size=64, lr=0.05, augmentation="digit-robust")
    run = train("cnn", "mnist", recipe, runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1],
                progress=False)
    assert run.metrics.test_accuracy >= 0.9
    losses = [h.train_loss for h in run.metrics.history]
    assert losses[-1] < 0.5 * losses[0]
    assert run.metrics.recipe["augmentation"] == "digit-robust"


def test_a_diverging_run_stops_before_it_saves_broken_weights(mnist, tmp_path: Path) -> None:
    # LeNet-5's fp32 run on an AVX2 machine went to NaN at epoch 9 of 40 and trained on for 30 more.
    wild = Recipe(epochs=2, batch_size=64, lr=1e6, augmentation="none")
    with pytest.raises(TrainingDiverged, match="not finite|nan|inf"):
        train("cnn", "mnist", wild, runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1],
              progress=False)
    run_dir = tmp_path / "cnn-mnist"
    assert not (run_dir / "weights.safetensors").exists()
    assert not (run_dir / "training_state.safetensors").exists()


def test_the_run_folder_holds_weights_metrics_and_curves(quick_run) -> None:
    run_dir, run = quick_run
    metrics = run_files.read_metrics(run_dir)  # decoding it as RunMetrics type-checks every field
    assert metrics == run.metrics
    assert metrics.complete and metrics.epochs_done == 5
    assert [h.epoch for h in metrics.history] == [1, 2, 3, 4, 5]
    assert metrics.recipe == QUICK.as_dict()
    assert metrics.device.startswith("cpu") and metrics.versions["torch"] == torch.__version__
    assert metrics.wall_seconds > 0 and metrics.history[0].images_per_second > 0
    weights = load_file(str(run_dir / "weights.safetensors"))  # safetensors: no pickle involved
    assert set(weights) == set(run.model.state_dict())
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_run_resumes_to_the_same_weights(mnist, tmp_path: Path) -> None:
    recipe = Recipe(epochs=2, batch_size=100, lr=0.05, augmentation="affine")
    kwargs = dict(train_split=mnist[0], test_split=mnist[1], progress=False)
    straight = train("cnn", "mnist", recipe, runs_dir=tmp_path / "straight", **kwargs)

    train("cnn", "mnist", recipe, runs_dir=tmp_path / "resumed", stop_after=1, **kwargs)  # as if interrupted
    assert run_files.read_metrics(tmp_path / "resumed" / "cnn-mnist").epochs_done == 1

    resumed = train("cnn", "mnist", recipe, runs_dir=tmp_path / "resumed", **kwargs)
    assert [h.epoch for h in resumed.metrics.history] == [1, 2]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.metrics.test_accuracy == straight.metrics.test_accuracy


def test_a_changed_recipe_starts_afresh(mnist, tmp_path: Path) -> None:
    kwargs = dict(runs_dir=tmp_path, train_split=mnist[0], test_split=mnist[1], progress=False)
    train("lenet5", "mnist", Recipe(epochs=1, batch_size=200, lr=0.05), **kwargs)
    again = train("lenet5", "mnist", Recipe(epochs=1, batch_size=250, lr=0.05), **kwargs)
    assert len(again.metrics.history) == 1
    assert again.metrics.recipe["batch_size"] == 250


def test_train_all_skips_only_runs_finished_with_the_current_recipe(quick_run) -> None:
    from dataclasses import replace

    from training.loop import is_trained

    run_dir, _ = quick_run
    assert is_trained(run_dir, QUICK)
    assert not is_trained(run_dir, replace(QUICK, epochs=6)), "a changed recipe makes the run stale"
    assert not is_trained(run_dir.parent / "lenet5-mnist", QUICK), "no run at all"


def test_a_run_resumed_elsewhere_records_both_devices() -> None:
    first = "cpu (AMD EPYC, 2 threads)"
    assert device_history(None, 0, first) == first
    assert device_history(first, 3, first) == first, "resumed where it ran: nothing to add"
    moved = device_history(first, 3, "cpu (AMD EPYC, 1 thread)")
    assert moved == "cpu (AMD EPYC, 2 threads); from epoch 4: cpu (AMD EPYC, 1 thread)"
    assert device_history(moved, 5, "cuda (NVIDIA H200)").endswith("; from epoch 6: cuda (NVIDIA H200)")


def test_the_loop_records_where_it_trains(quick_run) -> None:
    _, run = quick_run
    threads = torch.get_num_threads()
    assert run.metrics.device == f"cpu ({cpu_model()}, {threads} thread{'s' if threads > 1 else ''})"
