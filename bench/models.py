"""The README's model table: every model of a repository with its accuracy, precision, size and speed.

    python -m bench.models [--models models] [--only cnn-mnist,nin-cifar10] [--threads N] [--seconds 2]

Accuracy, precision and size are the card's; speed is measured here: ONNX Runtime's CPU provider
with the benchmarks' session settings (`bench/engine.py`), images per second at batch 1 and 32
on the real fixture test images normalised as the card says, each model's two batch sizes
interleaved (medians). Models are timed one after another, so compare them only within one run
on a quiet machine; the machine and its load are printed above the table.
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
from export.quantize import normalised
from modelrepo.card import Card, read_card
from modelrepo.layout import INPUT_NAME, MODEL_FILE, OUTPUT_NAME, model_folders

BATCHES = (1, 32)


def images_per_second(folder: Path, card: Card, threads: int, seconds: float) -> dict[int, float]:
    options = session_options(threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
    images = fixture_images(card.dataset).numpy()
    feeds = {batch: {INPUT_NAME: normalised(images[:batch], card.preprocessing)} for batch in BATCHES}
    medians = time_interleaved({batch: (lambda f=feed: session.run([OUTPUT_NAME], f)) for batch, feed in feeds.items()},
                               seconds)
    return {batch: batch / medians[batch] for batch in BATCHES}


def row(card: Card, speed: dict[int, float]) -> str:
    accuracy = "not measured" if card.test_accuracy is None else f"{100 * card.test_accuracy:.2f} %"
    return (f"| `{card.id}` | {accuracy} | {card.precision} | {card.onnx_bytes / 1e6:.2f} | "
            f"{1000 / speed[1]:.2f} | {speed[32]:,.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default: models/)")
    parser.add_argument("--only", default="", help="comma-separated model ids (default: every model)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default: every CPU)")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    folders = [f for f in model_folders(args.models) if not only or f.name in only]
    load1, load5, _ = os.getloadavg()
    print(f"# models of {args.models}, {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
          f"machine: {cpu_description()}, {os.cpu_count()} logical CPUs, load average {load1:.1f}/{load5:.1f} "
          f"at start; ONNX Runtime {ort.__version__} CPU provider, {args.threads} thread(s)\n")
    lines = ["| model | test accuracy (its card) | precision | ONNX MB | ms at batch 1 | images/s at batch 32 |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for folder in folders:
        card = read_card(folder)
        lines.append(row(card, images_per_second(folder, card, args.threads, args.seconds)))
        print(f"  {card.id} timed", file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
