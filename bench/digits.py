"""Digit robustness: real MNIST test digits under real-world degradations, sent to the real
service over HTTP, for every digit model.

    python bench/digits.py [--digits 1000] [--models cnn-mnist,lenet5-mnist] [--seed 0]
                           [--json out.json] [--markdown out.md] [--compare before=old.json ...]
    make bench-digits [BENCH_DIGITS_ARGS="..."]

Starts `python -m service` on 127.0.0.1 with the models of `--models-dir` (default: the
committed models/), then posts every image as the file a user would send (PNG or JPEG, many
per request to /predict/{model}/batch), so the service's own decoding and preprocessing are
part of what is measured. `clean` is the whole MNIST test set (10,000 digits); every other
condition (testkit/digit_conditions.py) takes the same seeded `--digits` of them, except the
drawn ones, rendered from the browser tests' strokes. Prints one table per model: condition,
accuracy, and its difference from clean; then the worst condition and the mean of them all.
`--json` keeps the counts, `--compare label=file.json` adds earlier runs as columns, and
`--markdown` writes the tables for docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from testkit.digit_conditions import BY_NAME, CONDITIONS, benchmark_files, mnist_test_digits
from testkit.live_server import Server, running_server

ROOT = Path(__file__).resolve().parent.parent

PER_REQUEST = 64  # the service's default CNNZOO_MAX_BATCH_IMAGES
IN_FLIGHT = 2  # requests at once: one is answered while the next is encoded and sent


@dataclass
class Score:
    correct: int = 0
    images: int = 0
    errors: int = 0  # images the service refused (counted as wrong)

    @property
    def accuracy(self) -> float:
        return self.correct / self.images if self.images else float("nan")


@dataclass
class Run:
    """One benchmark run: per model, per condition, the score."""

    label: str
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"label": self.label, "meta": self.meta,
                "scores": {m: {c: vars(s) for c, s in by.items()} for m, by in self.scores.items()}}

    @classmethod
    def from_json(cls, label: str, data: dict) -> Run:
        return cls(label, {m: {c: Score(**s) for c, s in by.items()} for m, by in data["scores"].items()},
                   data.get("meta", {}))


def digit_models(models_dir: Path) -> list[str]:
    cards = (json.loads(path.read_text()) for path in sorted(models_dir.glob("*/card.json")))
    return [card["id"] for card in cards if (card.get("preprocessing") or {}).get("kind") == "digit"]


def classify(http: httpx.Client, model: str, files: list[bytes], pool: ThreadPoolExecutor) -> tuple[list[int], int]:
    """Predicted class of every file (-1 where the service refused it) and the refusals."""
    def one_request(chunk: list[bytes]) -> list[dict]:
        response = http.post(f"/predict/{model}/batch", params={"top_k": 1},
                             files=[("files", (f"{i}", data)) for i, data in enumerate(chunk)])
        response.raise_for_status()
        return response.json()["results"]

    chunks = [files[i:i + PER_REQUEST] for i in range(0, len(files), PER_REQUEST)]
    results = [r for answer in pool.map(one_request, chunks) for r in answer]
    return [r.get("index", -1) for r in results], sum("error" in r for r in results)


def measure(server: Server, models: list[str],
            files: dict[str, tuple[list[bytes], np.ndarray]]) -> dict[str, dict[str, Score]]:
    """Every model's score on every condition, through `server`."""
    scores: dict[str, dict[str, Score]] = {}
    with server.client() as http, ThreadPoolExecutor(IN_FLIGHT) as pool:
        for model in models:
            started = time.perf_counter()
            scores[model] = {}
            for name, (images, labels) in files.items():
                predicted, errors = classify(http, model, images, pool)
                correct = int((np.array(predicted) == labels).sum())
                scores[model][name] = Score(correct, len(labels), errors)
            print(f"  {model}: {sum(len(f) for f, _ in files.values())} images in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    return scores


# --- the tables ---------------------------------------------------------------------------

def percent(x: float) -> str:
    return f"{100 * x:.2f} %"


def summary(by_condition: dict[str, Score]) -> tuple[str, float, float]:
    """(worst condition, its accuracy, the mean accuracy over all conditions but clean)."""
    degraded = {name: score.accuracy for name, score in by_condition.items() if name != "clean"}
    worst = min(degraded, key=degraded.get)
    return worst, degraded[worst], float(np.mean(list(degraded.values())))


def model_table(model: str, runs: list[Run]) -> str:
    """Markdown: one row per condition, one accuracy column per run (the last: Δ vs its clean too)."""
    latest = runs[-1].scores[model]
    clean = latest["clean"].accuracy
    header = "| condition | images | " + " | ".join(run.label for run in runs) + " | Δ vs clean |"
    rows = [header, "| --- | ---: |" + " ---: |" * len(runs) + " ---: |"]
    for name, score in latest.items():
        cells = [percent(run.scores[model][name].accuracy) if name in run.scores.get(model, {}) else "–"
                 for run in runs]
        delta = "" if name == "clean" else f"{100 * (score.accuracy - clean):+.2f}"
        refused = f" ({score.errors} refused)" if score.errors else ""
        rows.append(f"| {name} | {score.images}{refused} | " + " | ".join(cells) + f" | {delta} |")
    for what in ("mean (all but clean)", "worst"):
        cells = []
        for run in runs:
            if model not in run.scores:
                cells.append("–")
                continue
            worst, worst_accuracy, mean = summary(run.scores[model])
            cells.append(percent(mean) if what.startswith("mean") else f"{percent(worst_accuracy)} ({worst})")
        worst, worst_accuracy, mean = summary(latest)
        delta = (mean if what.startswith("mean") else worst_accuracy) - clean
        rows.append(f"| **{what}** | | " + " | ".join(cells) + f" | {100 * delta:+.2f} |")
    return f"#### {model}\n\n" + "\n".join(rows)


def overview(runs: list[Run], card_accuracy: dict[str, float]) -> str:
    """Markdown: per model, the card's accuracy, then each run's clean accuracy through the
    service, mean over the other conditions and worst condition."""
    header = "| model | card (PyTorch/ORT, no preprocessing) | " + " | ".join(
        f"{run.label}: clean · mean · worst" for run in runs) + " |"
    rows = [header, "| --- | ---: |" + " --- |" * len(runs)]
    for model in runs[-1].scores:
        cells = []
        for run in runs:
            if model not in run.scores:
                cells.append("–")
                continue
            worst, worst_accuracy, mean = summary(run.scores[model])
            cells.append(f"{percent(run.scores[model]['clean'].accuracy)} · {percent(mean)} · "
                         f"{worst} {percent(worst_accuracy)}")
        card = card_accuracy.get(model)
        rows.append(f"| {model} | {percent(card) if card is not None else '–'} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def conditions_table(names: list[str]) -> str:
    rows = ["| condition | kind | what was done |", "| --- | --- | --- |"]
    rows += [f"| {c.name} | {c.family} | {c.description} |" for c in CONDITIONS if c.name in names]
    return "\n".join(rows)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    return f"{cpu}, {os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at start"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=1000,
                        help="test digits per degraded condition, a seeded sample of the 10,000 (default 1000)")
    parser.add_argument("--models", default=None, help="comma-separated model ids (default: every digit model)")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")))
    parser.add_argument("--conditions", default=None, help="comma-separated condition names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="this run", help="this run's column heading")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=FILE.json",
                        help="an earlier run's --json output, shown as a column before this run's")
    args = parser.parse_args()

    models = args.models.split(",") if args.models else digit_models(args.models_dir)
    names = args.conditions.split(",") if args.conditions else [c.name for c in CONDITIONS]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if "clean" not in names:
        names.insert(0, "clean")  # every difference is measured from it
    earlier = [Run.from_json(label, json.loads(Path(path).read_text()))
               for label, path in (item.split("=", 1) for item in args.compare)]

    started = time.perf_counter()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "digits": args.digits, "seed": args.seed}
    print(f"machine: {meta['machine']}", flush=True)
    digits, labels = mnist_test_digits(args.data_dir)
    files = benchmark_files(digits, labels, args.digits, args.seed, names)
    print(f"{sum(len(f) for f, _ in files.values())} images in {len(files)} conditions made in "
          f"{time.perf_counter() - started:.0f} s; serving {args.models_dir}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-digits-") as tmp:
        with running_server(args.models_dir, Path(tmp)) as server:
            scores = measure(server, models, files)
    run = Run(args.label, scores, {**meta, "seconds": round(time.perf_counter() - started)})
    cards = {m: json.loads((args.models_dir / m / "card.json").read_text()).get("test_accuracy") for m in models}

    report = [f"Conditions (clean: all {len(digits):,} test digits; others: a seeded sample of "
              f"{min(args.digits, len(digits)):,}, seed {args.seed}):", "", conditions_table(names), "",
              overview([*earlier, run], cards), ""]
    report += [model_table(model, [*[r for r in earlier if model in r.scores], run]) + "\n" for model in models]
    text = "\n".join(report)
    print("\n" + text)
    print(f"total {run.meta['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run.to_json(), indent=1))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
