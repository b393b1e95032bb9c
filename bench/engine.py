"""ONNX Runtime (CPU provider) against PyTorch eager on the CPU, for every registered architecture.

    python bench/engine.py [--archs cnn,lenet5] [--batches 1,64] [--seconds 2] [--threads N]

Same process, same inputs (real test images from tests/fixtures, normalised as in training),
interleaved runs: each round times one PyTorch call and one call of each ONNX Runtime session,
rotating which goes first, so background load on the machine slows every engine alike and the
ratios stay fair even when the absolute times do not. Weights are random (timing does not depend
on their values). Prints a markdown table; ratio = PyTorch time / tuned ORT time (> 1: ORT faster).

The "tuned" session is what this project recommends for serving on a CPU; "basic" is the same
session with only the basic graph optimisations, to show what the full level buys. Why each setting
is there is said in `session_options`.

Neither engine busy-waits: OpenMP (PyTorch) is made passive and ORT's spinning is off. Spinning
threads of one engine steal the cores the other needs, and on a machine shared with other work
(training in the background) an active OpenMP barrier turns a 0.2 ms PyTorch call into 70 ms.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import onnxruntime as ort
import torch

from export.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.batches import normalise
from training.datasets import DATASETS, load_split
from training.recipes import TRAIN_ALL, model_id
from training.registry import architectures, build_model

GOAL = 1.5  # ORT at least this many times faster than PyTorch eager at batch 1


def session_options(threads: int, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # ALL = BASIC (constant folding, redundant-node removal) + Conv/BN/activation fusions +
    # the NCHWc layout transform that feeds MLAS's blocked convolution kernels.
    options.graph_optimization_level = level
    # One pool sized to the cores for the work inside each operator; these graphs are chains, so
    # running operators in parallel (inter-op) only adds a second pool fighting for the same cores.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep instead of spinning: see the module docstring.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Denormals are ~100x slower on x86 and carry no signal in these logits.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return options


def dataset_for(arch: str) -> str:
    """The dataset the train-all matrix trains `arch` on (MNIST first); CIFAR-10 otherwise."""
    datasets = [d for a, d in TRAIN_ALL if a == arch]
    return datasets[0] if datasets else "cifar10"


@functools.cache
def fixture_images(dataset: str) -> torch.Tensor:
    """The real test images committed in tests/fixtures (read once per dataset)."""
    return load_split(dataset, train=False, data_dir=ROOT / "tests" / "fixtures", download=False).images


def time_interleaved(engines: dict, seconds: float, min_rounds: int = 5, max_rounds: int = 500) -> dict[str, float]:
    """Median seconds per call of each engine, calling them in rotating order, round after round."""
    names = list(engines)
    for fn in engines.values():  # warm-up: allocations, oneDNN primitive caches, ORT arenas
        for _ in range(2):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() - started < seconds and rounds < max_rounds):
        order = names[rounds % len(names):] + names[:rounds % len(names)]
        for name in order:
            t = time.perf_counter()
            engines[name]()
            samples[name].append(time.perf_counter() - t)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}


def bench_arch(arch: str, batches: list[int], seconds: float, threads: int, workdir: Path) -> list[dict]:
    dataset = dataset_for(arch)
    spec = DATASETS[dataset]
    channels, size, _ = spec.input_shape
    torch.manual_seed(0)
    model = build_model(arch, channels, size, len(spec.classes)).eval()
    path = workdir / f"{model_id(arch, dataset)}.onnx"
    export_onnx(model, spec.input_shape, path, {"id": model_id(arch, dataset)})
    level = ort.GraphOptimizationLevel
    basic = ort.InferenceSession(str(path), session_options(threads, level.ORT_ENABLE_BASIC),
                                 providers=["CPUExecutionProvider"])
    tuned = ort.InferenceSession(str(path), session_options(threads, level.ORT_ENABLE_ALL),
                                 providers=["CPUExecutionProvider"])
    images = fixture_images(dataset)
    rows = []
    for batch in batches:
        x = normalise(images[:batch], spec)
        feed = {INPUT_NAME: x.numpy()}

        def run_torch():
            with torch.inference_mode():
                return model(x)

        medians = time_interleaved({
            "torch": run_torch,
            "ort_basic": lambda: basic.run([OUTPUT_NAME], feed),
            "ort_tuned": lambda: tuned.run([OUTPUT_NAME], feed),
        }, seconds)
        rows.append({"arch": arch, "dataset": dataset, "batch": batch, **medians,
                     "ratio": medians["torch"] / medians["ort_tuned"]})
        print(f"  {arch} batch {batch}: torch {1e3 * medians['torch']:.3f} ms, "
              f"ORT tuned {1e3 * medians['ort_tuned']:.3f} ms", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| architecture | dataset | batch | PyTorch eager ms | ORT basic-opt ms | ORT tuned ms | ratio (PyTorch / ORT tuned) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        mark = "" if r["batch"] != 1 or r["ratio"] >= GOAL else " (below goal)"
        lines.append(f"| {r['arch']} | {r['dataset']} | {r['batch']} | {1e3 * r['torch']:.3f} | "
                     f"{1e3 * r['ort_basic']:.3f} | {1e3 * r['ort_tuned']:.3f} | {r['ratio']:.2f}x{mark} |")
    return "\n".join(lines)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{model}, {os.cpu_count()} logical CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=None, help="comma-separated (default: every registered architecture)")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per architecture and batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both engines (default: every CPU)")
    args = parser.parse_args(argv)
    archs = args.archs.split(",") if args.archs else sorted(architectures())
    unknown = sorted(set(archs) - set(architectures()))
    if unknown:
        parser.error(f"unknown architecture(s): {', '.join(unknown)}")
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)

    print(f"# engine benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
          f"machine: {machine()}; threads per engine: {args.threads}\n"
          f"torch {torch.__version__}, onnxruntime {ort.__version__}\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        for arch in archs:
            rows += bench_arch(arch, batches, args.seconds, args.threads, Path(tmp))
    print(table(rows))
    at_one = [r for r in rows if r["batch"] == 1]
    below = [r["arch"] for r in at_one if r["ratio"] < GOAL]
    if at_one:
        print(f"\nbatch 1: ORT tuned >= {GOAL}x PyTorch eager for {len(at_one) - len(below)}/{len(at_one)} "
              f"architectures" + (f"; below the goal: {', '.join(below)}" if below else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
