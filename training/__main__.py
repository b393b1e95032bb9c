"""Command line: `python -m training {list,train,train-all}`.

    python -m training train --arch cnn --dataset mnist [--epochs N] [--budget auto|full|cpu]
    python -m training train-all [--force] [--budget auto|full|cpu]
    torchrun --nproc_per_node=N -m training train --arch resnet18 --dataset cifar10
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from training.datasets import DATASETS, DatasetNotFound
from training.loop import TrainingDiverged, is_trained, train
from training.run_files import read_metrics
from training.recipes import BUDGETS, CPU_RECIPES, TRAIN_ALL, model_id, recipe_for
from training.registry import architectures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where runs are written (default: runs/)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="dataset folder holding MNIST/raw and cifar-10-batches-bin (default: $DATA_DIR or data/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list architectures and the train-all matrix")
    sub.add_parser("report", help="print a Markdown table of the finished runs under --runs")
    one = sub.add_parser("train", help="train one (architecture, dataset) pair")
    one.add_argument("--arch", required=True, choices=sorted(architectures()))
    one.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    one.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--stop-after", type=int, default=None, metavar="N",
                     help="stop (checkpointed) once the run has N epochs; started again, it resumes")
    one.add_argument("--device", default=None, help="e.g. cpu or cuda:0 (default: CUDA if present)")
    one.add_argument("--force", action="store_true", help="discard an earlier run of this id and start afresh")
    everything = sub.add_parser("train-all", help="train the whole matrix, skipping finished runs")
    everything.add_argument("--force", action="store_true", help="retrain runs that are already finished")
    everything.add_argument("--only", default=None, help="comma-separated dataset names to restrict the matrix to")
    for p in (one, everything):
        p.add_argument("--budget", choices=BUDGETS, default="auto",
                       help="recipe rows: full (GPU-length schedules), cpu (about 100 minutes each on a "
                            "2-core CPU, where the pair has such a row) or auto: cpu when no GPU is present "
                            "(default: auto)")
        p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast + channels_last (default: on where it pays: CUDA, and CPUs with AVX512-BF16 or AMX)")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, arch in sorted(architectures().items()):
            print(f"{name:16} {arch.summary}  [{arch.paper}]")
        print("\ntrain-all:", ", ".join(model_id(a, d) for a, d in TRAIN_ALL))
        return 0

    if args.command == "report":
        print(report(args.runs))
        return 0

    if args.command == "train":
        pairs = [(args.arch, args.dataset)]
    else:
        only = set(args.only.split(",")) if args.only else set(DATASETS)
        pairs = [(a, d) for a, d in TRAIN_ALL if d in only]
    try:
        for arch, dataset in pairs:
            run_dir = args.runs / model_id(arch, dataset)
            if args.force and run_dir.exists():
                shutil.rmtree(run_dir)
            recipe = recipe_for(arch, dataset, args.budget, has_gpu=_has_gpu(args))
            budget = "cpu" if recipe == CPU_RECIPES.get((arch, dataset)) else "full"
            if getattr(args, "epochs", None):
                recipe = replace(recipe, epochs=args.epochs)
            if args.command == "train-all" and is_trained(run_dir, recipe):
                print(f"{model_id(arch, dataset)}: already trained ({run_dir}); --force retrains it")
                continue
            print(f"{model_id(arch, dataset)} ({budget} budget): {recipe}", flush=True)
            metrics = train(arch, dataset, recipe, runs_dir=args.runs, data_dir=args.data_dir,
                            seed=getattr(args, "seed", 0), device=getattr(args, "device", None),
                            bf16=args.bf16, budget=budget, stop_after=getattr(args, "stop_after", None)).metrics
            if metrics.complete:
                print(f"{metrics.id}: {100 * metrics.test_accuracy:.2f} % test accuracy "
                      f"in {metrics.wall_seconds:.0f} s -> {run_dir}")
    except (DatasetNotFound, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _has_gpu(args: argparse.Namespace) -> bool:
    import torch

    device = getattr(args, "device", None)
    return torch.cuda.is_available() if device is None else device.startswith("cuda")


def report(runs: Path) -> str:
    """One row per finished run, in train-all order: the figures docs/results.md quotes."""
    rows = ["| model | test accuracy | budget | epochs | train s | images/s | device | precision | commit |",
            "| --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- |"]
    matrix = [model_id(a, d) for a, d in TRAIN_ALL]
    found = sorted((p.parent.name for p in runs.glob("*/metrics.json")),
                   key=lambda i: (matrix.index(i) if i in matrix else len(matrix), i))
    for run_id in found:
        m = read_metrics(runs / run_id)
        if not m or not m.complete:
            continue
        rate = sum(h.images_per_second for h in m.history) / len(m.history)
        rows.append(f"| {m.id} | {100 * m.test_accuracy:.2f} % | {m.budget} | {m.epochs_done} "
                    f"| {m.train_seconds:.0f} | {rate:.0f} | {m.device} | {m.precision or 'fp32'} "
                    f"| {(m.git_commit or '?')[:7]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
