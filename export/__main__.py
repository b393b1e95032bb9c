"""Command line: `python -m export {export,export-all,quantize,quantize-all,report,redescribe}`.

    python -m export export --id cnn-mnist [--runs runs] [--models models]
    python -m export export-all [--force]
    python -m export quantize --id nin-cifar10     # models/nin-cifar10/ -> models/nin-cifar10-int8/
    python -m export quantize-all [--force]        # every published fp32 *-cifar10 model
    python -m export report          # the parity and int8 tables docs/results.md quotes, from the cards
    python -m export redescribe [id ...]   # descriptions from the registry; graphs untouched

Exit status: 0 published (or already up to date), 1 the parity gate or the int8 gate failed (the
report is printed and nothing is published), 2 the run, the fp32 model or the dataset is not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export import quantize
from export.errors import ExportError, Int8GateFailed, ParityGateFailed
from export.onnx_export import sha256_file
from export.parity import LOGIT_TOLERANCE
from export.publish import publish_run, redescribe
from modelrepo.card import Card, CardError, read_card
from modelrepo.layout import model_folders
from modelrepo.providers import ALIASES
from training import run_files
from training.datasets import DatasetNotFound, load_split

# The providers the parity gate has a tolerance for, by the short names users type.
PROVIDER_NAMES = {alias: name for alias, name in ALIASES.items() if name in LOGIT_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="training runs (default: runs/)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository (default: models/)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="datasets for the parity gate, calibration and the int8 gate (default: $DATA_DIR or data/)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="run the parity or int8 gate on the first N test images only (default: all)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated: cpu,cuda (default: cpu, plus cuda when a GPU is present)")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("export", help="publish one run")
    one.add_argument("--id", required=True, help="run id, e.g. cnn-mnist")
    every = sub.add_parser("export-all", help="publish every finished run in --runs")
    every.add_argument("--force", action="store_true",
                       help="republish models whose card already matches the run's weights")
    for name, what in (("quantize", "publish <id>-int8 from the published fp32 model <id>"),
                       ("quantize-all", "publish an int8 variant of every published fp32 *-cifar10 model")):
        q = sub.add_parser(name, help=what)
        if name == "quantize":
            q.add_argument("--id", required=True, help="the fp32 model's id, e.g. nin-cifar10")
        else:
            q.add_argument("--force", action="store_true",
                           help="requantize models whose int8 variant already comes from the same fp32 file")
        q.add_argument("--calibration-images", type=_positive_int, default=quantize.CALIBRATION_IMAGES,
                       help=f"training images to calibrate on (default: {quantize.CALIBRATION_IMAGES})")
        q.add_argument("--selection-images", type=_positive_int, default=quantize.SELECTION_IMAGES,
                       help="other training images the calibration method is chosen on "
                            f"(default: {quantize.SELECTION_IMAGES})")
        q.add_argument("--methods", type=_methods, default=quantize.METHODS,
                       help=f"comma-separated calibration methods to try (default: {','.join(quantize.METHODS)})")
        q.add_argument("--seed", type=int, default=quantize.SEED, help="of the sample of training images")
    sub.add_parser("report", help="print the parity (and int8 gate) report of every published model as Markdown")
    words = sub.add_parser("redescribe", help="update published models' descriptions from the registry, "
                                              "card and ONNX metadata, without re-exporting their graphs")
    words.add_argument("ids", nargs="*", help="model ids (default: every model in --models)")
    args = parser.parse_args(argv)
    if args.command == "report":
        print(parity_table(args.models))
        if any(read_card(f).quantization for f in model_folders(args.models)):
            print("\n" + int8_table(args.models))
        return 0
    if args.command in ("quantize", "quantize-all"):
        return _quantize_command(args)
    if args.command == "redescribe":
        for folder in [args.models / i for i in args.ids] or model_folders(args.models):
            print(f"{folder.name}: {redescribe(folder).description}")
        return 0
    try:
        providers = _providers(args.providers)
    except ValueError as err:
        parser.error(str(err))

    if args.command == "export":
        return _publish(args.runs / args.id, args, providers)
    runs = [d for d in sorted(args.runs.iterdir()) if d.is_dir()] if args.runs.is_dir() else []
    finished = [d for d in runs if _finished(d)]
    for d in sorted(set(runs) - set(finished)):
        print(f"{d.name}: not finished training; skipped")
    if not finished:
        print(f"no finished runs under {args.runs}/ (train some with `make train-all`)", file=sys.stderr)
        return 2
    worst = 0
    for run_dir in finished:
        if not args.force and _up_to_date(run_dir, args.models / run_dir.name):
            print(f"{run_dir.name}: already published from these weights; --force republishes it")
            continue
        worst = max(worst, _publish(run_dir, args, providers))
    return worst


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(","))
    unknown = [m for m in methods if m not in quantize.METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown calibration method(s) {unknown}; known: {', '.join(quantize.METHODS)}")
    return methods


def _providers(names: str | None) -> list[str] | None:
    if names is None:
        return None
    unknown = [n for n in names.split(",") if n.strip().lower() not in PROVIDER_NAMES]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; known: {', '.join(PROVIDER_NAMES)}")
    return [PROVIDER_NAMES[n.strip().lower()] for n in names.split(",")]


def _finished(run_dir: Path) -> bool:
    try:
        metrics = run_files.read_metrics(run_dir)
    except ValueError:  # msgspec's DecodeError and ValidationError: `export` would say what is wrong
        return False
    return bool(metrics and metrics.complete)


def _up_to_date(run_dir: Path, model_dir: Path) -> bool:
    try:
        card = read_card(model_dir)
    except CardError:
        return False
    return card.weights_sha256 == sha256_file(run_dir / run_files.WEIGHTS)


def _publish(run_dir: Path, args: argparse.Namespace, providers: list[str] | None) -> int:
    try:
        folder = publish_run(run_dir, args.models, data_dir=args.data_dir,
                             parity_limit=args.limit, providers=providers)
    except ParityGateFailed as err:
        print(f"error: {err}\nnothing was published", file=sys.stderr)
        return 1
    except (ExportError, DatasetNotFound) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = read_card(folder)
    print(card.parity.summary())
    print(f"{card.id}: published -> {folder} ({card.onnx_bytes / 1e6:.2f} MB ONNX)")
    return 0


def _quantize_command(args: argparse.Namespace) -> int:
    if args.command == "quantize":
        return _quantize(args.models / args.id, args)
    sources = [f for f in model_folders(args.models) if f.name.endswith("-cifar10")]
    if not sources:
        print(f"no published fp32 *-cifar10 models under {args.models}/ (make export-all first)", file=sys.stderr)
        return 2
    worst = 0
    for folder in sources:
        source, int8_card = _readable_card(folder), _readable_card(args.models / quantize.int8_id(folder.name))
        if (not args.force and source and int8_card and int8_card.quantization
                and int8_card.quantization.source_onnx_sha256 == source.onnx_sha256):
            print(f"{folder.name}: {int8_card.id} already comes from this fp32 file; --force requantizes it")
            continue
        worst = max(worst, _quantize(folder, args))
    return worst


def _quantize(folder: Path, args: argparse.Namespace) -> int:
    try:
        dataset = quantize.source_card(folder).dataset
        splits = [load_split(dataset, train=train, data_dir=args.data_dir, download=False) for train in (True, False)]
        train, test = (quantize.LabelledImages(s.images.numpy(), s.labels.numpy()) for s in splits)
        if args.limit is not None:
            test = test.take(slice(0, args.limit))
        published = quantize.quantize_model(folder, args.models, train=train, test=test,
                                            calibration_images=args.calibration_images,
                                            selection_images=args.selection_images,
                                            methods=args.methods, seed=args.seed)
    except Int8GateFailed as err:
        print(f"error: {err}\nnothing was published", file=sys.stderr)
        return 1
    except (ExportError, DatasetNotFound) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = read_card(published)
    print(card.quantization.summary())
    print(f"{card.id}: published -> {published} ({card.onnx_bytes / 1e6:.2f} MB ONNX)")
    return 0


def _readable_card(folder: Path) -> Card | None:
    try:
        return read_card(folder)
    except CardError:
        return None


def parity_table(models: Path) -> str:
    """One row per (published model, provider): the figures docs/results.md quotes."""
    rows = ["| model | images | provider | max abs logit diff | max abs prob diff | argmax agreement "
            "| PyTorch accuracy | ORT accuracy | ONNX MB |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for folder in model_folders(models):
        card = read_card(folder)
        if card.parity is None:  # int8 models pass their own gate (see their `quantization`)
            continue
        parity = card.parity
        for p in parity.providers:
            rows.append(f"| {card.id} | {parity.images} | {p.provider} | {p.max_abs_logit_diff:.2e} "
                        f"| {p.max_abs_prob_diff:.2e} | {100 * p.argmax_agreement:.2f} % "
                        f"| {100 * parity.torch_accuracy:.2f} % | {100 * p.onnx_accuracy:.2f} % "
                        f"| {card.onnx_bytes / 1e6:.2f} |")
    return "\n".join(rows)


def int8_table(models: Path) -> str:
    """One row per published int8 model: its scheme, calibration and int8 gate (docs/results.md)."""
    rows = ["| model | scheme | calibration | test images | fp32 accuracy | int8 accuracy | drop (points) "
            "| top-1 agreement | ONNX MB | fp32 ONNX MB |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for folder in model_folders(models):
        card = read_card(folder)
        q = card.quantization
        if q is None:
            continue
        source = _readable_card(models / q.source_model)
        rows.append(f"| {card.id} | {q.scheme.label()} | {q.calibration.method}, {q.calibration.images} train "
                    f"| {q.gate.images} | {100 * q.gate.fp32_accuracy:.2f} % | {100 * q.gate.int8_accuracy:.2f} % "
                    f"| {100 * (q.gate.fp32_accuracy - q.gate.int8_accuracy):.2f} "
                    f"| {100 * q.gate.top1_agreement:.2f} % | {card.onnx_bytes / 1e6:.2f} "
                    f"| {f'{source.onnx_bytes / 1e6:.2f}' if source else '?'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
