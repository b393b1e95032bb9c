"""What each model keeps resident in a cnnzoo worker, beside the bytes of its weights.

    python bench/model_memory.py [--models models] [--only cnn-mnist,resnet18-cifar10-int8]

Each model is loaded in a fresh process the way a worker loads it: ONNX Runtime's CPU provider,
one thread, no memory patterns, the process's shared CPU arena (service/repository.py), a run at
batch 1 and at batch 8, then the freed heap handed back. The process's anonymous memory before
and after is the model's cost. It is measured twice, with ONNX Runtime's weight prepacking (what
the service runs: each convolution's weights laid out once for the fast kernels) and without it,
so the table shows which part of a model's memory is its prepacked copy. Prints the model's ONNX
file and its weights (the graph's initializers), both measures, and the sum over the models.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from modelrepo.card import read_card
from modelrepo.layout import MODEL_FILE, model_folders
from service import repository

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("prepacked", "no-prepacking")
MB = 2**20


def anonymous_mb() -> float:
    """This process's anonymous resident memory: heap and arenas, not the mapped libraries."""
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no Anonymous line in /proc/self/smaps_rollup")


def loaded_cost_mb(folder: Path, way: str) -> float:
    """The anonymous memory one model adds to a fresh process, loaded and run as a worker does."""
    card = read_card(folder)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.enable_mem_pattern = False
    repository.share_cpu_arena(options)
    if way == "no-prepacking":
        options.add_session_config_entry("session.disable_prepacking", "1")
    repository.release_freed_heap()
    before = anonymous_mb()
    session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
    for batch in (1, 8):
        session.run(None, {card.input.name: np.zeros((batch, *card.input.shape), np.float32)})
    repository.release_freed_heap()
    return anonymous_mb() - before


def weights_mb(onnx_file: Path) -> float:
    graph = onnx.load(str(onnx_file)).graph
    return sum(onnx.numpy_helper.to_array(t).nbytes for t in graph.initializer) / MB


def measured_in_fresh_process(folder: Path, way: str) -> float:
    done = subprocess.run([sys.executable, __file__, "--cost-of", str(folder), way],
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository")
    parser.add_argument("--only", help="comma-separated model ids (default: every model)")
    parser.add_argument("--cost-of", nargs=2, metavar=("FOLDER", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost_of:  # one fresh process's measure
        print(f"{loaded_cost_mb(Path(args.cost_of[0]), args.cost_of[1]):.2f}")
        return 0

    folders = model_folders(args.models)
    if args.only:
        wanted = set(args.only.split(","))
        folders = [f for f in folders if f.name in wanted]
        if missing := wanted - {f.name for f in folders}:
            parser.error(f"not in {args.models}: {', '.join(sorted(missing))}")
    print(f"onnxruntime {ort.__version__}; MB = 2^20 bytes; anonymous memory a model adds to a fresh process\n")
    print("| model | precision | ONNX file MB | weights MB | resident MB (prepacked, as served) | "
          "resident MB (no prepacking) | resident ÷ weights |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    totals = np.zeros(4)
    for folder in folders:
        onnx_file = folder / MODEL_FILE
        row = np.array([onnx_file.stat().st_size / MB, weights_mb(onnx_file),
                        *(measured_in_fresh_process(folder, way) for way in WAYS)])
        totals += row
        print(f"| {folder.name} | {read_card(folder).precision} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} | "
              f"{row[3]:.1f} | {row[2] / row[1]:.2f} |", flush=True)
    print(f"| all {len(folders)} | | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} | {totals[3]:.1f} | "
          f"{totals[2] / totals[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
