"""Where a run trains: the process group under torchrun, the device, its name, and the
numeric format on it (bf16 autocast, memory layout)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPU)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def pick_device(ddp: Distributed, requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device(f"cuda:{ddp.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({cpu_model()}, {threads} thread{'s' if threads > 1 else ''})"


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays on `device`: on CUDA, and on CPUs with bf16 units (AVX512-BF16,
    AMX). On a 2-core Zen 4 EPYC it trained faster than fp32 (images/s, quiet-ish: AlexNet
    346/172, ResNet-18 58/48, Inception on MNIST 3,556/2,303); on an AVX2-only EPYC it was ~10x slower."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def uses_channels_last(device: torch.device, bf16: bool) -> bool:
    """NHWC for tensor cores and oneDNN's bf16 kernels, and for oneDNN's fp32 convolutions on a
    CPU too: on a 2-core AVX2 EPYC it trained every net faster (images/s, NHWC against NCHW:
    ResNet-18 26/20, AlexNet 96/79, cnn 3,747/2,426, inception 1,143/926 on MNIST)."""
    return bf16 or device.type == "cpu"


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
