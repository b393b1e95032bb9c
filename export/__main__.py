"""Command line: `python -m export {export,export-all,report,redescribe}`.

    python -m export export --id cnn-mnist [--runs runs] [--models models]
    python -m export export-all [--force]
    python -m export report          # the parity table docs/results.md quotes, from models/*/card.json
    python -m export redescribe [id ...]   # descriptions from the registry; graphs untouched

Exit status: 0 published (or already up to date), 1 the parity gate failed (the report is
printed and nothing is published), 2 the run or the dataset is not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.errors import ExportError, ParityGateFailed
from export.onnx_export import sha256_file
from export.parity import LOGIT_TOLERANCE
from export.publish import publish_run, redescribe
from modelrepo.card import CardError, read_card
from modelrepo.layout import model_folders
from modelrepo.providers import ALIASES
from training import run_files
from training.datasets import DatasetNotFound

# The providers the parity gate has a tolerance for, by the short names users type.
PROVIDER_NAMES = {alias: name for alias, name in ALIASES.items() if name in LOGIT_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="training runs (default: runs/)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository (default: models/)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="datasets for the parity gate (default: $DATA_DIR or data/)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="check parity on the first N test images only (default: the whole test set)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated: cpu,cuda (default: cpu, plus cuda when a GPU is present)")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("export", help="publish one run")
    one.add_argument("--id", required=True, help="run id, e.g. cnn-mnist")
    every = sub.add_parser("export-all", help="publish every finished run in --runs")
    every.add_argument("--force", action="store_true",
                       help="republish models whose card already matches the run's weights")
    sub.add_parser("report", help="print the parity report of every published model as a Markdown table")
    words = sub.add_parser("redescribe", help="update published models' descriptions from the registry, "
                                              "card and ONNX metadata, without re-exporting their graphs")
    words.add_argument("ids", nargs="*", help="model ids (default: every model in --models)")
    args = parser.parse_args(argv)
    if args.command == "report":
        print(parity_table(args.models))
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
