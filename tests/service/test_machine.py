"""What the machine offers: GPUs and CPUs found cheaply, and the worker plan that follows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modelrepo.providers import CPU, CUDA, TENSORRT
from service import machine


def fake_dev(tmp_path: Path, *names: str) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in names:
        (dev / name).touch()
    return dev


def test_gpus_are_counted_from_the_drivers_device_files(tmp_path: Path) -> None:
    assert machine.nvidia_gpus(fake_dev(tmp_path, "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null")) == 2
    assert machine.nvidia_gpus(tmp_path / "missing") == 0


def test_a_cgroup_cpu_quota_caps_the_cpus(tmp_path: Path) -> None:
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # 1.5 CPUs: rounded up
    assert machine.usable_cpus(limit) == min(2, machine.usable_cpus(tmp_path / "none"))
    limit.write_text("max 100000\n")
    assert machine.usable_cpus(limit) == machine.usable_cpus(tmp_path / "none") >= 1


@pytest.mark.parametrize(("workers", "gpus", "cpus", "expected", "threads"), [
    (None, 0, 2, 2, 1),   # auto, no GPU: a process per CPU, one ONNX Runtime thread each
    (None, 0, 8, 8, 1),
    (None, 2, 16, 2, 8),  # auto with GPUs: a process per GPU
    (1, 0, 2, 1, 2),      # set by hand: kept; the CPUs go to its sessions
])
def test_the_worker_plan(workers, gpus, cpus, expected, threads) -> None:
    plan = machine.plan(workers, ort_threads=0, gpus=gpus, cpus=cpus)
    assert (plan.workers, plan.ort_threads) == (expected, threads)
    assert plan.reason == ("CNNZOO_WORKERS" if workers else
                           f"auto: {gpus} NVIDIA GPUs" if gpus else f"auto: {cpus} CPUs, no NVIDIA GPU")
    assert machine.plan(workers, ort_threads=3, gpus=gpus, cpus=cpus).ort_threads == 3


def test_the_largest_batch_is_32_with_a_gpu_and_each_models_own_on_a_cpu_unless_set() -> None:
    assert machine.plan(None, 0, gpus=1, cpus=16).max_batch == machine.GPU_MAX_BATCH == 32
    assert machine.plan(None, 0, gpus=0, cpus=2).max_batch is None  # per model: cpu_batch
    assert machine.plan(None, 0, gpus=0, cpus=2, max_batch=64).max_batch == 64  # CNNZOO_MAX_BATCH=64


@pytest.mark.parametrize(("image_seconds", "batch"), [
    (15e-6, 32),     # cnn-mnist: a batch of 32 takes 0.5 ms
    (0.25e-3, 20),   # 20 images fill the 5 ms call
    (2.3e-3, 8),     # nin-cifar10: two would; never fewer than 8
    (1.0, 8),
    (0.0, 32),       # too fast to time
])
def test_on_a_cpu_batches_grow_until_a_call_takes_5_ms_between_8_and_32(image_seconds, batch) -> None:
    assert machine.cpu_batch(image_seconds) == batch


def test_without_a_gpu_the_cuda_providers_are_never_asked_for(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="service.machine"):
        assert machine.usable_providers((TENSORRT, CUDA, CPU), gpus=0) == (CPU,)
    assert "no NVIDIA GPU" in caplog.text
    assert machine.usable_providers((CUDA,), gpus=0) == (CPU,)
    assert machine.usable_providers((CUDA, CPU), gpus=1) == (CUDA, CPU), "a GPU machine keeps CUDA"
