"""ONNX Runtime's CPU memory: each session's own arena, one arena shared by every session of the
process (with or without ORT's memory patterns), or none; per model and batch size, interleaved
in-process.

    python bench/ort_arena.py [--models nin-cifar10,cnn-mnist,alexnet-cifar10-int8] [--rounds 6]
    python bench/ort_arena.py --memory      # RSS of the whole starter set, each way, a process each

Three sessions of each committed model (1 ONNX Runtime thread, as a cnnzoo worker on 2 cores has),
one per allocator, timed in rotating order round after round; prints the median time per run and
each ratio to the own arena's. An own arena keeps its model's largest batch allocated (memory,
once per model); without one every run allocates afresh (time); the shared arena keeps the
largest batch of any model, once (service/repository.py). A memory pattern is one block planned
for all of a run's tensors, per input shape: each new batch size wants a block of its own size,
which the arena may not have free ("shared-no-pattern" allocates tensor by tensor instead).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.card import read_card
from service.repository import share_cpu_arena
from testkit.measure import machine_line, rss_mb

MODELS = Path(__file__).resolve().parent.parent / "models"
ALLOCATORS = ("own", "shared", "shared-no-pattern", "none")
MEMORY_BATCHES = (1, 8, 32, 3, 17, 26, 11)  # sizes as the service's dynamic batching forms them


def session(model: str, allocator: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = allocator != "none"
    if allocator.startswith("shared"):
        share_cpu_arena(options)
    options.enable_mem_pattern = allocator != "shared-no-pattern"
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])


def compare_speed(models: list[str], batches: list[int], rounds: int) -> None:
    for model in models:
        shape = read_card(MODELS / model).input.shape
        sessions = {allocator: session(model, allocator) for allocator in ALLOCATORS}
        name = sessions["own"].get_inputs()[0].name
        for n in batches:
            feed = {name: np.random.default_rng(0).standard_normal([n, *shape]).astype(np.float32)}
            times: dict[str, list[float]] = {allocator: [] for allocator in ALLOCATORS}
            for s in sessions.values():
                s.run(None, feed)  # warm-up: the arena's first allocation, kernels' first use
            repeat = max(3, 200 // n)
            for r in range(rounds):
                order = ALLOCATORS[r % len(ALLOCATORS):] + ALLOCATORS[:r % len(ALLOCATORS)]
                for allocator in order:
                    start = time.perf_counter()
                    for _ in range(repeat):
                        sessions[allocator].run(None, feed)
                    times[allocator].append((time.perf_counter() - start) / repeat)
            ms = {allocator: statistics.median(t) * 1e3 for allocator, t in times.items()}
            others = ", ".join(f"{a} {ms[a]:8.3f} ms ({ms[a] / ms['own']:.3f}x)" for a in ALLOCATORS[1:])
            print(f"{model:18s} batch {n:2d}: own {ms['own']:8.3f} ms, {others}", flush=True)


def starter_set_rss(allocator: str) -> str:
    """In this (fresh) process: every committed model's session, then batches of MEMORY_BATCHES on each."""
    def own_rss_mb() -> float:
        return rss_mb(os.getpid())
    before = own_rss_mb()
    sessions = [(session(folder.name, allocator), read_card(folder).input.shape)
                for folder in sorted(MODELS.iterdir()) if (folder / "1" / "model.onnx").is_file()]
    ready = own_rss_mb()
    for s, shape in sessions:
        for n in MEMORY_BATCHES:
            s.run(None, {s.get_inputs()[0].name: np.zeros([n, *shape], np.float32)})
    return (f"{allocator:17s} arena: {len(sessions)} models; RSS {before:.0f} MB before, {ready:.0f} MB with the "
            f"sessions, {own_rss_mb():.0f} MB after batches of {', '.join(map(str, MEMORY_BATCHES))} on each")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="nin-cifar10,cnn-mnist,alexnet-cifar10-int8")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--memory", action="store_true", help="RSS of the starter set, each allocator")
    parser.add_argument("--memory-of", choices=ALLOCATORS, help=argparse.SUPPRESS)  # one fresh process's share
    args = parser.parse_args()
    if args.memory_of:
        print(starter_set_rss(args.memory_of))
        return 0
    print(f"machine: {machine_line()}")
    if args.memory:
        for allocator in ALLOCATORS:  # a process each: RSS does not fall back once grown
            subprocess.run([sys.executable, __file__, "--memory-of", allocator], check=True)
        return 0
    compare_speed(args.models.split(","), [int(b) for b in args.batches.split(",")], args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
