"""What this machine offers the service: CPUs, NVIDIA GPUs, and what follows from them.

Cheap checks only (files under /dev, /proc and /sys): the point is to decide, before loading
ONNX Runtime's CUDA provider (+260 MB of libraries in every worker), whether there is a GPU
to use at all, and how many worker processes the machine can keep busy.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from modelrepo.providers import CPU, CUDA, TENSORRT

log = logging.getLogger("service.machine")

GPU_PROVIDERS = (CUDA, TENSORRT)
# CNNZOO_MAX_BATCH=auto: 32 with a GPU. On a CPU, per model, batches grow until one ONNX Runtime
# call would take BATCH_CALL_S, within CPU_BATCHES. There a batch buys the spreading of each
# call's fixed cost over its images (cnn-mnist, 15 µs an image: 10 % more requests at 32 than at
# 8), while a large model's batch only holds its activations (nin-cifar10, 2.3 ms an image at any
# batch: 11 MB at 8, 46 MB at 32) and keeps every request in it waiting (docs/results.md, "the
# hot path, and batches on a CPU chosen per model").
GPU_MAX_BATCH = 32
CPU_BATCHES = (8, 32)
BATCH_CALL_S = 0.005


def nvidia_gpus(dev: Path = Path("/dev")) -> int:
    """NVIDIA GPUs this process can see: /dev/nvidia0, nvidia1, ... (the driver's device
    files, which the NVIDIA Container Toolkit mounts into a container given GPUs)."""
    try:
        return sum(1 for entry in dev.iterdir() if re.fullmatch(r"nvidia\d+", entry.name))
    except OSError:
        return 0


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's
    CPU limit), rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cgroup.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


@dataclass(frozen=True)
class Plan:
    """How many server processes, how many ONNX Runtime threads each, the largest batch, and why."""

    workers: int
    ort_threads: int
    max_batch: int | None  # None: per model (`cpu_batch`)
    gpus: int
    cpus: int
    reason: str


def plan(workers: int | None, ort_threads: int, gpus: int | None = None, cpus: int | None = None,
         max_batch: int | None = None) -> Plan:
    """`workers=None` (CNNZOO_WORKERS=auto): one process per GPU when there are GPUs, else one
    per CPU. `ort_threads=0`: the CPUs shared out among the processes, at least one each, so
    that two processes on two cores do not run four ONNX Runtime threads. `max_batch=None`
    (CNNZOO_MAX_BATCH=auto): GPU_MAX_BATCH with a GPU, else None, each model's own (`cpu_batch`)."""
    gpus = nvidia_gpus() if gpus is None else gpus
    cpus = usable_cpus() if cpus is None else cpus
    if workers is None:
        workers = gpus or cpus
        reason = f"auto: {gpus} NVIDIA GPU{'s' if gpus != 1 else ''}" if gpus else f"auto: {cpus} CPU{'s' if cpus != 1 else ''}, no NVIDIA GPU"
    else:
        reason = "CNNZOO_WORKERS"
    threads = ort_threads or max(1, cpus // workers)
    batch = max_batch or (GPU_MAX_BATCH if gpus else None)
    return Plan(workers, threads, batch, gpus, cpus, reason)


def cpu_batch(image_seconds: float) -> int:
    """CNNZOO_MAX_BATCH=auto on a CPU, for a model whose batch of one takes `image_seconds`."""
    low, high = CPU_BATCHES
    return max(low, min(high, int(BATCH_CALL_S / image_seconds))) if image_seconds > 0 else high


def usable_providers(providers: tuple[str, ...], gpus: int | None = None) -> tuple[str, ...]:
    """`providers` without the GPU ones when there is no NVIDIA GPU: asking ONNX Runtime for
    CUDA there only loads its libraries to find out (and ends on the CPU anyway)."""
    gpus = nvidia_gpus() if gpus is None else gpus
    if gpus or not any(p in GPU_PROVIDERS for p in providers):
        return providers
    kept = tuple(p for p in providers if p not in GPU_PROVIDERS) or (CPU,)
    log.info("no NVIDIA GPU on this machine (no /dev/nvidia<N>): not loading %s; serving on %s",
             " or ".join(p for p in providers if p in GPU_PROVIDERS), ", ".join(kept))
    return kept
