"""What a larger batch buys on this machine: time per image, and the memory the batch holds.

    python -m bench.batch_sizes [--models cnn-mnist,nin-cifar10] [--batches 1,8,16,32] [--threads 1]

Each (model, batch size) runs in a fresh process that loads the model as the service does
(`service.repository.load_model`: the shared CPU arena, no memory patterns), trims the heap,
then runs one batch: the growth of the process's RSS is what that batch keeps resident (the
arena holds it for the next one). Then the median time per image over repeated runs. Real
fixture test images, normalised as the card says. This is what CNNZOO_MAX_BATCH=auto is
chosen by (service/machine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = "cnn-mnist,nin-cifar10,nin-cifar10-int8,alexnet-cifar10-int8,vgg16-cifar10-int8,resnet18-cifar10-int8"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def measure(folder: Path, batch: int, threads: int, seconds: float) -> dict:
    """One model at one batch size, in this process (called in a fresh one by `main`)."""
    import numpy as np

    from modelrepo.providers import CPU
    from service.preprocess import normalise
    from service import repository
    from testkit.fixture_images import cifar_test, mnist_test

    model = repository.load_model(folder, (CPU,), ort_threads=threads)
    images = (mnist_test() if model.spec.kind == "digit" else cifar_test())[0][:batch]
    x = np.stack([normalise(np.asarray(image), model.spec) for image in images]).astype(np.float32)
    repository.release_freed_heap()
    before = rss_mb()
    model.infer(x)
    held = rss_mb() - before
    times = []
    started = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - started < seconds and len(times) < 2000):
        start = time.perf_counter()
        model.infer(x)
        times.append(time.perf_counter() - start)
    return {"model": folder.name, "batch": batch, "held_mb": held, "ms_per_image": float(np.median(times)) * 1e3 / batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated ids in models/")
    parser.add_argument("--batches", default="1,8,16,32")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (the service's: 1 per process here)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per (model, batch)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(ROOT / "models" / args.one[0], int(args.one[1]), args.threads, args.seconds)))
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.threads} ONNX Runtime thread(s)\n")
    print("| model | " + " | ".join(f"batch {b}: ms/image, MB held" for b in batches) + " |")
    print("| --- |" + " ---: |" * len(batches))
    for model in args.models.split(","):
        cells = []
        for batch in batches:
            out = subprocess.run([sys.executable, "-m", "bench.batch_sizes", "--one", model, str(batch),
                                  "--threads", str(args.threads), "--seconds", str(args.seconds)],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            cells.append(f"{row['ms_per_image']:.3f}, {row['held_mb']:.0f}")
        print(f"| {model} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
