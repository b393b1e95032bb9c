"""The training loop: one (architecture, dataset) pair -> `runs/<id>/`.

One GPU:   python -m training train --arch resnet18 --dataset cifar10
Many GPUs: torchrun --nproc_per_node=8 -m training train --arch resnet18 --dataset cifar10
CPU:       the same commands; torchrun then uses the gloo backend.
Under torchrun every rank trains on its share of each batch (DistributedDataParallel);
only rank 0 evaluates, logs and writes.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from training import run_files
from training.run_files import ChoiceEvaluation, EpochRecord, RunMetrics
from training.averaging import WeightAverage, with_test_time_augmentation
from training.batches import batches_per_epoch, eval_batches, train_batches
from training.datasets import DATASETS, Split, load_split
from training.devices import (Distributed, autocast, describe_device, init_distributed, native_bf16,
                              pick_device, to_layout, uses_channels_last)
from training.optimizer import make_optimizer, one_cycle, set_learning_rate
from training.recipes import Recipe, model_id, recipe_for
from training.registry import build_model


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, dataset: str, bf16: bool = False,
             channels_last: bool = False, batch_size: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) over the whole split."""
    model.eval()
    spec = DATASETS[dataset]
    total_loss, correct = 0.0, 0
    for x, y in eval_batches(split, spec, batch_size):
        with autocast(x.device, bf16):
            logits = model(to_layout(x, channels_last)).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(split), correct / len(split)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the run stops before it saves broken weights."""


@dataclass
class EpochTotals:
    loss_sum: float
    correct: int
    seen: int  # images this rank trained on
    lr: float  # the rate of the last step


def train_one_epoch(trained: nn.Module, optimizer: torch.optim.Optimizer, recipe: Recipe,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], first_step: int,
                    total_steps: int, *, bf16: bool, channels_last: bool,
                    average: WeightAverage | None = None, bar: tqdm | None = None) -> EpochTotals:
    """One pass over `batches`: forward, loss, one-cycle rate, step, and the weight average."""
    trained.train()
    device = next(trained.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, step, lr = 0, first_step, 0.0
    for x, y in batches:
        with autocast(device, bf16):
            logits = trained(to_layout(x, channels_last))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        lr = recipe.lr * one_cycle(step, total_steps, recipe.warmup)
        set_learning_rate(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(trained.module if isinstance(trained, nn.parallel.DistributedDataParallel) else trained)
        step += 1
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update()
            if bar.n % 20 == 0 or bar.n == bar.total:
                elapsed = bar.format_dict["elapsed"]
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%",
                                img_s=f"{seen / max(elapsed, 1e-9):.0f}/rank", refresh=False)
    if not math.isfinite(loss_sum.item()):  # checked once an epoch: a per-step check syncs a GPU
        raise TrainingDiverged(f"the training loss is {loss_sum.item()} after step {step}: the run diverged "
                               f"(peak learning rate {recipe.lr}); nothing of this epoch is saved. Start it "
                               "afresh (--force) with a lower peak rate in training/recipes.py")
    return EpochTotals(loss_sum.item(), int(correct.item()), seen, lr)


@dataclass
class TrainedRun:
    model: nn.Module  # the model the run saved (the weight average when the recipe keeps one), unwrapped
    metrics: RunMetrics


def train(arch: str, dataset: str, recipe: Recipe | None = None, runs_dir: Path = Path("runs"),
          data_dir: Path | None = None, seed: int = 0, device: str | None = None,
          bf16: bool | None = None, train_split: Split | None = None,
          test_split: Split | None = None, progress: bool = True, budget: str = "full",
          stop_after: int | None = None) -> TrainedRun:
    """Train `arch` on `dataset`, resuming from `runs/<id>/` if it holds a partial run of the same recipe.

    `stop_after` ends the call after that many epochs of the run in all, checkpointed, as an
    interruption would: the next call resumes from there (a long run can be trained in parts).

    `recipe` defaults to the table's row at `budget` (`training.recipes.recipe_for`). `bf16`
    (autocast) defaults to on where it pays: CUDA, and CPUs with native bf16 (AVX512-BF16, AMX;
    `devices.native_bf16`). `train_split`/`test_split` replace the real
    data (tests use small fixtures).
    """
    ddp = init_distributed()
    dev = pick_device(ddp, device)
    bf16 = native_bf16(dev) if bf16 is None else bf16
    channels_last = uses_channels_last(dev, bf16)
    spec = DATASETS[dataset]
    recipe = recipe or recipe_for(arch, dataset, budget, has_gpu=dev.type == "cuda")
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
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    average = WeightAverage(model, recipe.ema) if recipe.ema else None
    per_rank_batch = recipe.batch_size // ddp.world_size
    steps_per_epoch = batches_per_epoch(len(train_split), per_rank_batch, ddp.world_size)
    total_steps = steps_per_epoch * recipe.epochs

    here = describe_device(dev)
    metrics = _resume(run_dir, run_id, model, optimizer, generator, recipe, average) or _new_metrics(
        run_id, arch, dataset, recipe, budget, seed, model, here, ddp)
    start_epoch = len(metrics.history)
    metrics.device = device_history(metrics.device, start_epoch, here)
    precision = ("bf16 autocast" if bf16 else "fp32") + (", channels_last" if channels_last else "")
    metrics.precision = device_history(metrics.precision, start_epoch, precision)
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if start_epoch:
            print(f"{run_id}: resuming after epoch {start_epoch}/{recipe.epochs}")
    trained = nn.parallel.DistributedDataParallel(model) if ddp.world_size > 1 else model
    served = average.model if average is not None else model  # what is evaluated, saved and exported

    last_epoch = recipe.epochs if stop_after is None else min(recipe.epochs, stop_after)
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"{run_id} {epoch + 1}/{recipe.epochs}",
                   disable=not (progress and ddp.is_main), unit="batch", dynamic_ncols=True,
                   mininterval=1.0, file=sys.stdout)
        batches = train_batches(train_split, spec, per_rank_batch, recipe.augmentation,
                                generator, ddp.rank, ddp.world_size)
        totals = train_one_epoch(trained, optimizer, recipe, batches, epoch * steps_per_epoch, total_steps,
                                 bf16=bf16, channels_last=channels_last, average=average, bar=None if bar.disable else bar)
        bar.close()
        if ddp.world_size > 1:
            # DDP syncs gradients, and buffers only *before* each forward: after the last step
            # every rank holds its own BatchNorm statistics. Rank 0's are the ones it evaluates
            # and saves; give them to all ranks so every replica is the same model.
            for buffer in [*model.buffers(), *served.buffers()]:
                dist.broadcast(buffer, src=0)
        train_seconds = time.perf_counter() - started
        if ddp.is_main:
            test_loss, test_acc = evaluate(served, test_split, dataset, bf16, channels_last)
            metrics.history.append(EpochRecord(
                epoch=epoch + 1,
                train_loss=totals.loss_sum / totals.seen,
                train_accuracy=totals.correct / totals.seen,
                test_loss=test_loss,
                test_accuracy=test_acc,
                lr_end=totals.lr,
                train_seconds=round(train_seconds, 3),
                seconds=round(time.perf_counter() - started, 3),
                images_per_second=round(totals.seen * ddp.world_size / train_seconds, 1),
            ))
            print(f"{run_id} epoch {epoch + 1}/{recipe.epochs}: test accuracy {100 * test_acc:.2f} % "
                  f"(loss {test_loss:.4f}), {train_seconds:.1f} s", flush=True)
            if epoch + 1 == recipe.epochs:
                metrics.final_evaluation = final_evaluation(model, average, recipe, test_split, dataset,
                                                               bf16, channels_last)
            _checkpoint(run_dir, metrics, model, optimizer, generator, recipe, average)
        if ddp.world_size > 1:
            dist.barrier()
    return TrainedRun(served, metrics)


def device_history(recorded: str | None, start_epoch: int, here: str) -> str:
    """Where (or in what precision) the run trained: `here`, or what was recorded plus
    "; from epoch N: here" when it resumes somewhere else (another device, thread count, precision)."""
    if not start_epoch or not recorded:
        return here
    return recorded if here in recorded else f"{recorded}; from epoch {start_epoch + 1}: {here}"


def final_evaluation(model: nn.Module, average: WeightAverage | None, recipe: Recipe, split: Split,
                     dataset: str, bf16: bool, channels_last: bool) -> list[ChoiceEvaluation]:
    """Test accuracy of each choice the recipe made, measured side by side on the finished run:
    the trained weights, their average, and each with the test-time augmentation. The last
    row is the model that is saved and exported."""
    candidates = [("trained", model)] + ([("average", average.model)] if average is not None else [])
    views = ["none"] + ([recipe.tta] if recipe.tta != "none" else [])
    rows = []
    for weights, net in candidates:
        for tta in views:
            loss, accuracy = evaluate(with_test_time_augmentation(net, tta), split, dataset, bf16, channels_last)
            rows.append(ChoiceEvaluation(weights=weights, tta=tta, test_loss=loss, test_accuracy=accuracy))
    return rows


def _new_metrics(run_id: str, arch: str, dataset: str, recipe: Recipe, budget: str, seed: int,
                 model: nn.Module, device: str, ddp: Distributed) -> RunMetrics:
    import torchvision

    return RunMetrics(
        id=run_id, arch=arch, dataset=dataset, recipe=recipe.as_dict(), budget=budget, seed=seed,
        parameters=sum(p.numel() for p in model.parameters()), device=device, world_size=ddp.world_size,
        versions={"python": sys.version.split()[0], "torch": str(torch.__version__),
                  "torchvision": str(torchvision.__version__)},
        git_commit=run_files.git_commit(), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _resume(run_dir: Path, run_id: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, recipe: Recipe, average: WeightAverage | None) -> RunMetrics | None:
    """Metrics of a partial run whose recipe matches, with model, optimizer and average restored; else None."""
    metrics = run_files.read_metrics(run_dir)
    if not metrics or not metrics.history or not (run_dir / run_files.TRAINING_STATE).exists():
        return None
    if metrics.recipe != recipe.as_dict():
        print(f"{run_id}: the recipe changed since the last run; starting afresh")
        return None
    saved = run_dir / run_files.WEIGHTS
    run_files.load_weights(average.model if average is not None else model, saved)
    run_files.load_training_state(run_dir / run_files.TRAINING_STATE, model, optimizer, generator, average)
    return metrics


def _checkpoint(run_dir: Path, metrics: RunMetrics, model: nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, recipe: Recipe, average: WeightAverage | None) -> None:
    history = metrics.history
    metrics.epochs_done = len(history)
    metrics.complete = len(history) >= recipe.epochs
    final = metrics.final_evaluation
    metrics.test_accuracy = final[-1].test_accuracy if metrics.complete and final else history[-1].test_accuracy
    metrics.wall_seconds = round(sum(h.seconds for h in history), 1)
    metrics.train_seconds = round(sum(h.train_seconds for h in history), 1)
    if metrics.complete:
        metrics.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    served = average.model if average is not None else model
    run_files.save_weights(served, run_dir / run_files.WEIGHTS,
                           {"id": metrics.id, "arch": metrics.arch, "dataset": metrics.dataset})
    run_files.save_training_state(run_dir / run_files.TRAINING_STATE, model, optimizer, generator, average)
    run_files.write_metrics(run_dir, metrics)
    run_files.plot_curves(run_dir, metrics)


def is_trained(run_dir: Path, recipe: Recipe) -> bool:
    """Finished, and with this recipe: a run of an older recipe is stale."""
    metrics = run_files.read_metrics(run_dir)
    return bool(metrics and metrics.complete and metrics.recipe == recipe.as_dict())
