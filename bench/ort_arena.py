"""ONNX Runtime's CPU memory arena on and off, per model and batch size, interleaved in-process.

    python bench/ort_arena.py [--models nin-cifar10,cnn-mnist,alexnet-cifar10] [--rounds 6]

Two sessions of each committed model (1 ONNX Runtime thread, as a cnnzoo worker on 2 cores has),
one with the arena and one without, timed in alternating order round after round; prints the
median time per run and the ratio off/on. The arena keeps each model's largest batch allocated
(memory); without it every run allocates afresh (time).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.card import read_card
from testkit.measure import machine_line

MODELS = Path(__file__).resolve().parent.parent / "models"


def session(model: str, arena: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="nin-cifar10,cnn-mnist,alexnet-cifar10")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    for model in args.models.split(","):
        shape = read_card(MODELS / model).input.shape
        sessions = {arena: session(model, arena) for arena in (True, False)}
        name = sessions[True].get_inputs()[0].name
        for n in map(int, args.batches.split(",")):
            feed = {name: np.random.default_rng(0).standard_normal([n, *shape]).astype(np.float32)}
            times: dict[bool, list[float]] = {True: [], False: []}
            for s in sessions.values():
                s.run(None, feed)  # warm-up: the arena's first allocation, kernels' first use
            repeat = max(3, 200 // n)
            for r in range(args.rounds):
                for arena in ((True, False) if r % 2 else (False, True)):
                    start = time.perf_counter()
                    for _ in range(repeat):
                        sessions[arena].run(None, feed)
                    times[arena].append((time.perf_counter() - start) / repeat)
            on, off = statistics.median(times[True]), statistics.median(times[False])
            print(f"{model:18s} batch {n:2d}: arena {on * 1e3:8.3f} ms, no arena {off * 1e3:8.3f} ms, "
                  f"off/on {off / on:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
