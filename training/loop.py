"""The training loop: one (architecture, dataset) pair -> `runs/<id>/`.

One GPU:   python -m training train --arch resnet18 --dataset cifar10
Many GPUs: torchrun --nproc_per_node=8 -m training train --arch resnet18 --dataset cifar10
CPU:       the same commands; torchrun then uses the gloo backend.
Under torchrun every rank trains on its share of each batch (DistributedDataParallel);
only rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from training import run_files
from training.batches import batches_per_epoch, eval_batches, train_batches
from training.datasets import DATASETS, Split, load_split
from training.recipes import Recipe, model_id, recipe_for
from training.registry import build_model


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPU)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def pick_device(ddp: Distributed, requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device(f"cuda:{ddp.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({cpu_model()}, {threads} thread{'s' if threads > 1 else ''})"


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_cycle(step: int, total: int, warmup: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then linear decay to 0."""
    peak = max(1, int(total * warmup))
    if step < peak:
        return (step + 1) / peak
    return max(0.0, (total - step) / max(1, total - peak))


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # No weight decay on biases and BatchNorm parameters: decaying them only hurts.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, dataset: str, bf16: bool = False,
             batch_size: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) over the whole split."""
    model.eval()
    spec = DATASETS[dataset]
    total_loss, correct = 0.0, 0
    for x, y in eval_batches(split, spec, batch_size):
        with autocast(x.device, bf16):
            logits = model(to_layout(x, bf16)).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(split), correct / len(split)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def to_layout(x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """channels_last goes with bf16: tensor cores (and oneDNN's bf16 kernels) want NHWC."""
    return x.contiguous(memory_format=torch.channels_last) if bf16 else x


@dataclass
class TrainedRun:
    model: nn.Module  # this rank's model, unwrapped from DDP
    metrics: dict


def train(arch: str, dataset: str, recipe: Recipe | None = None, runs_dir: Path = Path("runs"),
          data_dir: Path | None = None, seed: int = 0, device: str | None = None,
          bf16: bool | None = None, train_split: Split | None = None,
          test_split: Split | None = None, progress: bool = True) -> TrainedRun:
    """Train `arch` on `dataset`, resuming from `runs/<id>/` if it holds a partial run of the same recipe.

    `recipe` defaults to the table's row (`training.recipes.recipe_for`). `bf16` (autocast +
    channels_last) defaults to on for CUDA and off for CPU, where it is worth turning on only
    if the CPU has native bf16 (AVX512-BF16, AMX). `train_split`/`test_split` replace the real
    data (tests use small fixtures).
    """
    ddp = init_distributed()
    dev = pick_device(ddp, device)
    bf16 = dev.type == "cuda" if bf16 is None else bf16
    spec = DATASETS[dataset]
    recipe = recipe or recipe_for(arch, dataset)
    run_id = model_id(arch, dataset)
    run_dir = Path(runs_dir) / run_id

    torch.manual_seed(seed)
    generator = torch.Generator(device=dev).manual_seed(seed)
    if train_split is None:
        train_split = load_split(dataset, train=True, data_dir=data_dir)
    if test_split is None:
        test_split = load_split(dataset, train=False, data_dir=data_dir)
    train_split, test_split = train_split.to(dev), test_split.to(dev)

    channels, size, _ = spec.input_shape
    model = build_model(arch, channels, size, len(spec.classes)).to(dev)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    per_rank_batch = recipe.batch_size // ddp.world_size
    steps_per_epoch = batches_per_epoch(len(train_split), per_rank_batch, ddp.world_size)
    total_steps = steps_per_epoch * recipe.epochs

    here = describe_device(dev)
    metrics = _resume(run_dir, run_id, model, optimizer, generator, recipe) or _new_metrics(
        run_id, arch, dataset, recipe, seed, model, here, ddp)
    metrics["precision"] = "bf16 autocast, channels_last" if bf16 else "fp32"
    start_epoch = len(metrics["history"])
    if start_epoch and here not in metrics["device"]:
        metrics["device"] += f"; from epoch {start_epoch + 1}: {here}"
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if start_epoch:
            print(f"{run_id}: resuming after epoch {start_epoch}/{recipe.epochs}")
    trained = nn.parallel.DistributedDataParallel(model) if ddp.world_size > 1 else model
    step = start_epoch * steps_per_epoch

    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        model.train()
        bar = tqdm(total=steps_per_epoch, desc=f"{run_id} {epoch + 1}/{recipe.epochs}",
                   disable=not (progress and ddp.is_main), unit="batch", dynamic_ncols=True,
                   mininterval=1.0, file=sys.stdout)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        for x, y in train_batches(train_split, spec, per_rank_batch, recipe.augmentation,
                                  generator, ddp.rank, ddp.world_size):
            with autocast(dev, bf16):
                logits = trained(to_layout(x, bf16))
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            lr = recipe.lr * one_cycle(step, total_steps, recipe.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update()
            if bar.n % 20 == 0 or bar.n == steps_per_epoch:
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}",
                                acc=f"{100 * correct.item() / seen:.2f}%",
                                img_s=f"{seen * ddp.world_size / elapsed:.0f}", refresh=False)
        bar.close()
        if ddp.world_size > 1:
            # DDP syncs gradients, and buffers only *before* each forward: after the last step
            # every rank holds its own BatchNorm statistics. Rank 0's are the ones it evaluates
            # and saves; give them to all ranks so every replica is the same model.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        train_seconds = time.perf_counter() - started
        if ddp.is_main:
            test_loss, test_acc = evaluate(model, test_split, dataset, bf16)
            metrics["history"].append({
                "epoch": epoch + 1,
                "train_loss": loss_sum.item() / seen,
                "train_accuracy": correct.item() / seen,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "lr_end": lr,
                "train_seconds": round(train_seconds, 3),
                "seconds": round(time.perf_counter() - started, 3),
                "images_per_second": round(seen * ddp.world_size / train_seconds, 1),
            })
            print(f"{run_id} epoch {epoch + 1}/{recipe.epochs}: test accuracy {100 * test_acc:.2f} % "
                  f"(loss {test_loss:.4f}), {train_seconds:.1f} s", flush=True)
            _checkpoint(run_dir, metrics, model, optimizer, generator, recipe)
        if ddp.world_size > 1:
            dist.barrier()
    return TrainedRun(model, metrics)


def _new_metrics(run_id: str, arch: str, dataset: str, recipe: Recipe, seed: int,
                 model: nn.Module, device: str, ddp: Distributed) -> dict:
    import torchvision

    return {
        "id": run_id, "arch": arch, "dataset": dataset, "recipe": recipe.as_dict(), "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": device, "world_size": ddp.world_size,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__},
        "git_commit": run_files.git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": False, "history": [],
    }


def _resume(run_dir: Path, run_id: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, recipe: Recipe) -> dict | None:
    """Metrics of a partial run whose recipe matches, with model and optimizer restored; else None."""
    metrics = run_files.read_metrics(run_dir)
    if not metrics or not metrics["history"] or not (run_dir / run_files.TRAINING_STATE).exists():
        return None
    if metrics["recipe"] != recipe.as_dict():
        print(f"{run_id}: the recipe changed since the last run; starting afresh")
        return None
    run_files.load_weights(model, run_dir / run_files.WEIGHTS)
    run_files.load_training_state(run_dir / run_files.TRAINING_STATE, model, optimizer, generator)
    return metrics


def _checkpoint(run_dir: Path, metrics: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, recipe: Recipe) -> None:
    history = metrics["history"]
    metrics["epochs_done"] = len(history)
    metrics["test_accuracy"] = history[-1]["test_accuracy"]
    metrics["wall_seconds"] = round(sum(h["seconds"] for h in history), 1)
    metrics["train_seconds"] = round(sum(h["train_seconds"] for h in history), 1)
    metrics["complete"] = len(history) >= recipe.epochs
    if metrics["complete"]:
        metrics["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run_files.save_weights(model, run_dir / run_files.WEIGHTS,
                           {"id": metrics["id"], "arch": metrics["arch"], "dataset": metrics["dataset"]})
    run_files.save_training_state(run_dir / run_files.TRAINING_STATE, model, optimizer, generator)
    run_files.write_metrics(run_dir, metrics)
    run_files.plot_curves(run_dir, metrics)


def is_trained(run_dir: Path, recipe: Recipe) -> bool:
    """Finished, and with this recipe: a run of an older recipe is stale."""
    metrics = run_files.read_metrics(run_dir)
    return bool(metrics and metrics.get("complete") and metrics["recipe"] == recipe.as_dict())
