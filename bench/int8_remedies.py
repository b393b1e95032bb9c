"""Each way of quantizing one fp32 model, measured: what ONNX Runtime fuses, how fast, how faithful.

    python -m bench.int8_remedies models/resnet18-cifar10 [--variants s8s8,u8s8-rr] [--seconds 20] [--threads 2]

For every variant below: the fp32 model quantized that way (MinMax calibration on the real
training images of tests/fixtures; the speed does not depend on the calibration), the node counts
of the graph ORT runs (`bench/graph_ops.py`), images per second against the fp32 model at one
batch size, all sessions timed in one interleaved run (`bench/engine.py`), and top-1 agreement
with the fp32 model on the real fixture test images (meaningful for trained weights only; the
forced s8s8 kernels are so slow that `--agreement-images 0` is worth it for random weights).
This is how the scheme of `export/quantize.py` was chosen; docs/results.md quotes its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import onnxruntime as ort

from bench.engine import session_options, time_interleaved
from bench.graph_ops import COLUMNS, optimized_counts
from export.int8_gate import compare, cpu_description
from export.quantize import CalibrationBatches, logits_of, normalised, prepare, quantize_onnx
from modelrepo.card import QuantScheme, read_card
from modelrepo.layout import INPUT_NAME, MODEL_FILE, OUTPUT_NAME
from training.datasets import load_split

FIXTURES = ROOT / "tests" / "fixtures"
CALIBRATION_IMAGES = 128


def scheme(activations: str, weights: str, *, fmt: str = "QDQ", reduce_range: bool = False) -> QuantScheme:
    return QuantScheme(format=fmt, activation_type=activations, weight_type=weights, per_channel=True,
                       reduce_range=reduce_range)


@dataclass(frozen=True)
class Variant:
    what: str
    scheme: QuantScheme
    prepared: bool = True  # quant_pre_process (ORT's basic optimizer) before quantizing
    extra_options: dict = field(default_factory=dict)  # quantize_static's
    session_config: dict = field(default_factory=dict)  # the serving session's


VARIANTS = {
    "s8s8": Variant("S8S8 (the quantizer's default types)", scheme("int8", "int8")),
    "s8s8-dedicated": Variant("S8S8, a dedicated Q/DQ pair per consumer", scheme("int8", "int8"),
                              extra_options={"DedicatedQDQPair": True}),
    "s8s8-int8-kernels": Variant("S8S8, ORT told to keep s8s8 (session.qdqisint8allowed=1)", scheme("int8", "int8"),
                                 session_config={"session.qdqisint8allowed": "1"}),
    "s8s8-qop": Variant("S8S8 as QOperator (QLinearConv in the file)", scheme("int8", "int8", fmt="QOperator")),
    "u8s8": Variant("U8S8", scheme("uint8", "int8")),
    "u8s8-rr": Variant("U8S8, reduce_range (what export/quantize.py publishes)", scheme("uint8", "int8", reduce_range=True)),
    "u8s8-rr-qop": Variant("U8S8, reduce_range, as QOperator", scheme("uint8", "int8", fmt="QOperator", reduce_range=True)),
    "u8s8-rr-unprepared": Variant("U8S8, reduce_range, no quant_pre_process (ORT optimizes only after)",
                                  scheme("uint8", "int8", reduce_range=True), prepared=False),
    "u8u8": Variant("U8U8 (uint8 weights)", scheme("uint8", "uint8")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a published fp32 model folder, e.g. models/resnet18-cifar10")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--batch", type=int, default=32, help="batch size to time (default: 32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget of the interleaved run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default: every CPU)")
    parser.add_argument("--agreement-images", type=int, default=500,
                        help="fixture test images to measure agreement on (default: all 500; 0: none)")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    card = read_card(args.model)
    if card.precision != "fp32":
        parser.error(f"{args.model} is {card.precision}; give the fp32 model")
    fp32_path = args.model / MODEL_FILE
    train = load_split(card.dataset, train=True, data_dir=FIXTURES, download=False)
    test = load_split(card.dataset, train=False, data_dir=FIXTURES, download=False)
    calibration = CalibrationBatches(normalised(train.images[:CALIBRATION_IMAGES].numpy(), card.preprocessing))
    test_inputs = normalised(test.images.numpy(), card.preprocessing)
    labels = test.labels.numpy()[:args.agreement_images]

    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="int8-remedies-") as tmp:
        work = Path(tmp)
        prepare(fp32_path, work / "prepared.onnx")
        files = {"fp32": fp32_path}
        for name in names:
            variant = VARIANTS[name]
            files[name] = work / f"{name}.onnx"
            print(f"quantizing: {variant.what}", file=sys.stderr, flush=True)
            quantize_onnx(work / "prepared.onnx" if variant.prepared else fp32_path, files[name], calibration,
                          "MinMax", variant.scheme, extra_options=variant.extra_options)
        configs = {name: VARIANTS[name].session_config if name in VARIANTS else {} for name in files}
        sessions = {}
        for name, path in files.items():
            options = session_options(args.threads, level)
            for key, value in configs[name].items():
                options.add_session_config_entry(key, value)
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        agreement = {}
        if len(labels):
            checked = test_inputs[:len(labels)]
            fp32_logits = logits_of(sessions["fp32"], checked)
            agreement = {name: compare(fp32_logits, logits_of(s, checked), labels).top1_agreement
                         for name, s in sessions.items()}
        feed = {INPUT_NAME: test_inputs[:args.batch]}
        print(f"timing {len(sessions)} sessions at batch {args.batch}, interleaved", file=sys.stderr, flush=True)
        medians = time_interleaved({name: (lambda s=s: s.run([OUTPUT_NAME], feed)) for name, s in sessions.items()},
                                   args.seconds, min_rounds=3)
        counts = {name: optimized_counts(path, "ALL", 1, configs[name]) for name, path in files.items()}

    print(f"# int8 remedies for {card.id}: {cpu_description()}, {args.threads} threads, onnxruntime {ort.__version__}\n")
    print(f"| variant | {' | '.join(COLUMNS)} | img/s at batch {args.batch} | vs fp32 | top-1 agreement |")
    print(f"| --- | {' | '.join('---:' for _ in COLUMNS)} | ---: | ---: | ---: |")
    for name in files:
        what = VARIANTS[name].what if name in VARIANTS else "fp32 (the published model)"
        print(f"| {name}: {what} | {' | '.join(str(counts[name].get(op, 0)) for op in COLUMNS)} "
              f"| {args.batch / medians[name]:.1f} | {medians['fp32'] / medians[name]:.2f}x "
              f"| {f'{100 * agreement[name]:.1f} %' if agreement else 'not measured'} |")
    print(f"\nNode counts: the graph ORT runs (ALL level). Agreement: on {len(labels)} fixture test images.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
