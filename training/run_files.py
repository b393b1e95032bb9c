"""What a training run leaves in `runs/<id>/`, and how it is read back.

- `weights.safetensors`: the model's state dict (never pickle), the file export reads.
- `training_state.safetensors`: optimizer buffers and RNG states, so a run resumes exactly
  from its last finished epoch; with a weight average (EMA), also the trained weights, since
  `weights.safetensors` then holds the average.
- `metrics.json`: a `RunMetrics` record: per-epoch history, final accuracy, timings, device,
  versions, recipe, commit. Training writes it, `python -m training report` and export read it.
- `curves.png`: accuracy and loss per epoch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from training.averaging import WeightAverage

WEIGHTS = "weights.safetensors"
TRAINING_STATE = "training_state.safetensors"
METRICS = "metrics.json"
CURVES = "curves.png"


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_weights(model: nn.Module, path: Path) -> None:
    model.load_state_dict(load_file(str(path)))


def save_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, average: WeightAverage | None = None) -> None:
    """Optimizer buffers keyed by parameter name, the RNG states and, with a weight average,
    the trained weights and the average's step count, as plain tensors."""
    names = {id(p): name for name, p in model.named_parameters()}
    tensors: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                value = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim/{names[id(p)]}/{key}"] = value.detach().contiguous().cpu()
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/data"] = generator.get_state().cpu()
    if average is not None:
        tensors.update({f"model/{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()})
        tensors["average/updates"] = torch.tensor(average.updates)
    save_file(tensors, str(path))


def load_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, average: WeightAverage | None = None) -> None:
    tensors = load_file(str(path))
    if average is not None:
        model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
        average.updates = int(tensors["average/updates"])
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        kind, *rest = key.split("/")
        if kind == "optim":
            name, field = "/".join(rest[:-1]), rest[-1]
            p = params[name]
            optimizer.state[p][field] = value.to(p.device) if field != "step" else value
    torch.set_rng_state(tensors["rng/torch"])
    generator.set_state(tensors["rng/data"])


class EpochRecord(msgspec.Struct):
    epoch: int
    train_loss: float  # on the augmented training images, during the epoch
    train_accuracy: float
    test_loss: float  # of the saved model (the weight average, if the recipe keeps one), no TTA
    test_accuracy: float
    lr_end: float
    train_seconds: float
    seconds: float  # the epoch's wall time, evaluation included
    images_per_second: float


class ChoiceEvaluation(msgspec.Struct):
    """One recipe choice measured on the finished run: which weights, which test-time view."""

    weights: str  # "trained" or "average"
    tta: str  # "none" or the recipe's test-time augmentation
    test_loss: float
    test_accuracy: float


class RunMetrics(msgspec.Struct, kw_only=True):
    """`metrics.json`. Export needs only `id`, `arch` and `dataset`; the rest it copies when present."""

    id: str
    arch: str
    dataset: str
    recipe: dict[str, Any] | None = None  # Recipe.as_dict()
    budget: str = "full"  # which row of the recipe table: "full" or "cpu"
    seed: int = 0
    parameters: int | None = None
    device: str | None = None  # where it trained; "...; from epoch N: ..." when resumed elsewhere
    world_size: int = 1
    precision: str | None = None  # "fp32" or "bf16 autocast", and the memory layout
    versions: dict[str, str] = msgspec.field(default_factory=dict)
    git_commit: str | None = None
    started: str | None = None
    history: list[EpochRecord] = msgspec.field(default_factory=list)
    final_evaluation: list[ChoiceEvaluation] | None = None  # the last row is the saved model
    complete: bool = False
    epochs_done: int = 0
    test_accuracy: float | None = None  # of the saved model as exported (TTA included)
    wall_seconds: float | None = None
    train_seconds: float | None = None
    finished: str | None = None


def read_metrics(run_dir: Path) -> RunMetrics | None:
    """The run's record, or None if it has none; a malformed one raises msgspec.ValidationError."""
    path = run_dir / METRICS
    return msgspec.json.decode(path.read_bytes(), type=RunMetrics) if path.exists() else None


def write_metrics(run_dir: Path, metrics: RunMetrics) -> None:
    tmp = run_dir / (METRICS + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(metrics), indent=2) + b"\n")
    tmp.replace(run_dir / METRICS)  # atomic: a crash never leaves half a file


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def plot_curves(run_dir: Path, metrics: RunMetrics) -> None:
    """Accuracy and loss per epoch, train and test, the two panels of the usual training plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = metrics.history
    epochs = [h.epoch for h in history]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    acc_ax.plot(epochs, [100 * h.train_accuracy for h in history], label="train (augmented)")
    acc_ax.plot(epochs, [100 * h.test_accuracy for h in history], label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss_ax.plot(epochs, [h.train_loss for h in history], label="train (augmented)")
    loss_ax.plot(epochs, [h.test_loss for h in history], label="test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{metrics.id}: {100 * history[-1].test_accuracy:.2f} % test accuracy")
    fig.tight_layout()
    fig.savefig(run_dir / CURVES, dpi=100)
    plt.close(fig)
