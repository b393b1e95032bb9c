"""What ONNX Runtime really runs: node-type counts of a graph as stored and after its optimizer.

    python bench/graph_ops.py models/resnet18-cifar10-int8 [models/resnet18-cifar10 ...] [--threads 2]

For each model folder (or .onnx file) one row per stage: the file as stored, after ORT's BASIC
level (constant folding, redundant nodes), and after ALL (the QDQ fusions into QLinearConv,
QLinearAdd, QGemm..., and the layout changes), the graph the CPU provider executes, dumped through
`SessionOptions.optimized_model_filepath`. A DequantizeLinear -> Conv -> QuantizeLinear group that
survives ALL is a convolution computed in float between two conversions: the int8 graph pays for
the conversions and gains nothing there.

The ALL dump holds this machine's choices (its layout transformer writes CPU-specific nodes), so
read it on the CPU that serves the model.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]

from modelrepo.layout import MODEL_FILE

LEVELS = {"BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
# The columns that tell how much of a quantized graph runs in int8; the rest are summed under "other".
COLUMNS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "Conv", "QLinearAdd", "Add", "QGemm", "Gemm",
           "Transpose")


def op_counts(path: Path) -> collections.Counter:
    graph = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(node.op_type for node in graph.node)


def optimized_counts(path: Path, level: str, threads: int, config: dict[str, str] | None = None) -> collections.Counter:
    """Node counts of the graph ORT builds from `path` at `level` (with optional session config entries)."""
    with tempfile.TemporaryDirectory(prefix="graph-ops-") as tmp:
        dumped = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = LEVELS[level]
        options.intra_op_num_threads = threads
        options.optimized_model_filepath = str(dumped)
        options.log_severity_level = 3  # the "hardware-specific dump" warning is the point here
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return op_counts(dumped)


def stages(path: Path, threads: int = 1, config: dict[str, str] | None = None) -> dict[str, collections.Counter]:
    return {"stored": op_counts(path), **{f"ORT {level}": optimized_counts(path, level, threads, config)
                                          for level in LEVELS}}


def header() -> list[str]:
    return [f"| graph | stage | {' | '.join(COLUMNS)} | other | nodes |",
            f"| --- | --- | {' | '.join('---:' for _ in COLUMNS)} | ---: | ---: |"]


def row(name: str, stage: str, counts: collections.Counter) -> str:
    other = sum(n for op, n in counts.items() if op not in COLUMNS)
    return (f"| {name} | {stage} | {' | '.join(str(counts.get(op, 0)) for op in COLUMNS)} | {other} "
            f"| {sum(counts.values())} |")


def onnx_path(target: Path) -> Path:
    return target / MODEL_FILE if target.is_dir() else target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graphs", nargs="+", type=Path, help="model folders (models/<id>) or .onnx files")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the sessions (default: 1)")
    args = parser.parse_args(argv)
    lines = header()
    for target in args.graphs:
        name = target.name if target.is_dir() else target.stem
        for stage, counts in stages(onnx_path(target), args.threads).items():
            lines.append(row(name, stage, counts))
    print("\n".join(lines))
    print(f"\nonnxruntime {ort.__version__}; the ALL rows are what the CPU provider runs on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
