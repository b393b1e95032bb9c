"""INT8 against fp32, both on ONNX Runtime's CPU provider, for every CIFAR-10 net of the matrix.

    python -m bench.int8 [--models models] [--batches 1,32] [--seconds 3] [--threads N]

For each CIFAR-10 net of the train-all matrix whose fp32 model `models/<id>/` and int8 model
`models/<id>-int8/` are both published (the others are listed as missing): images per second of
each at each batch size, timed in one interleaved run per net and batch (`bench/engine.py`: the
same session settings, rotating order, medians), on the real fixture test images normalised as
the card says. Goal (issue 11): int8 at least 2x fp32 at batch 32 for ResNet18 and VGG16.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import onnxruntime as ort

from bench.engine import fixture_images, session_options, time_interleaved
from export.int8_gate import cpu_description
from export.quantize import int8_id, normalised
from modelrepo.card import read_card
from modelrepo.layout import INPUT_NAME, MODEL_FILE, OUTPUT_NAME
from training.recipes import TRAIN_ALL, model_id

GOAL = 2.0
GOAL_NETS = ("resnet18-cifar10", "vgg16-cifar10")
GOAL_BATCH = 32


def cifar10_nets() -> list[str]:
    return [model_id(arch, dataset) for arch, dataset in TRAIN_ALL if dataset == "cifar10"]


def missing_models(models: Path) -> list[str]:
    return [name for net in cifar10_nets() for name in (net, int8_id(net))
            if not (models / name / MODEL_FILE).exists()]


def bench_net(models: Path, net: str, batches: list[int], seconds: float, threads: int) -> list[dict]:
    card = read_card(models / net)
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {precision: ort.InferenceSession(str(models / name / MODEL_FILE), session_options(threads, level),
                                                providers=["CPUExecutionProvider"])
                for precision, name in (("fp32", net), ("int8", int8_id(net)))}
    images = fixture_images(card.dataset)
    rows = []
    for batch in batches:
        feed = {INPUT_NAME: normalised(images[:batch].numpy(), card.preprocessing)}
        medians = time_interleaved({p: (lambda s=s: s.run([OUTPUT_NAME], feed)) for p, s in sessions.items()}, seconds)
        rows.append({"net": net, "batch": batch, "fp32": batch / medians["fp32"], "int8": batch / medians["int8"]})
        print(f"  {net} batch {batch}: fp32 {rows[-1]['fp32']:.1f} img/s, int8 {rows[-1]['int8']:.1f} img/s",
              file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], models: Path) -> str:
    lines = ["| model | batch | fp32 img/s | int8 img/s | int8 / fp32 | fp32 MB | int8 MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = r["int8"] / r["fp32"]
        goal = r["net"] in GOAL_NETS and r["batch"] == GOAL_BATCH
        mark = f" ({'meets' if ratio >= GOAL else 'below'} the {GOAL:g}x goal)" if goal else ""
        sizes = [read_card(models / name).onnx_bytes / 1e6 for name in (r["net"], int8_id(r["net"]))]
        lines.append(f"| {r['net']} | {r['batch']} | {r['fp32']:.1f} | {r['int8']:.1f} | {ratio:.2f}x{mark} "
                     f"| {sizes[0]:.1f} | {sizes[1]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default: models/)")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default: 1,32)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per net and batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="intra-op threads of both sessions (default: every CPU)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    missing = missing_models(args.models)
    nets = [net for net in cifar10_nets() if net not in missing and int8_id(net) not in missing]
    print(f"# int8 vs fp32 on ONNX Runtime, {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
          f"machine: {cpu_description()}, {os.cpu_count()} logical CPUs; threads per session: {args.threads}; "
          f"onnxruntime {ort.__version__}\n")
    if missing:
        print(f"not published, so not timed: {', '.join(missing)}\n")
    rows = [row for net in nets for row in bench_net(args.models, net, batches, args.seconds, args.threads)]
    if rows:
        print(table(rows, args.models))
    else:
        print(f"no CIFAR-10 net has both an fp32 and an int8 model in {args.models}/ (make quantize-all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
