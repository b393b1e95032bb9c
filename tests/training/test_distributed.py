"""Two gloo processes under DistributedDataParallel train in lock-step and end with identical weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = """
import sys
from pathlib import Path
from training.datasets import load_split
from training.loop import train
from training.recipes import Recipe
from training.run_files import save_weights

fixtures, runs, out = map(Path, sys.argv[1:4])
run = train("residual", "mnist", Recipe(epochs=1, batch_size=100, lr=0.05, augmentation="affine"),
            runs_dir=runs, train_split=load_split("mnist", True, fixtures, download=False),
            test_split=load_split("mnist", False, fixtures, download=False), progress=False)
import torch.distributed as dist
save_weights(run.model, out / f"rank{dist.get_rank()}.safetensors", {})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_weights(fixtures_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(fixtures_dir), str(tmp_path / "runs"), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    # Only rank 0 writes the run folder, and it trained on the whole epoch across both ranks.
    metrics = (tmp_path / "runs" / "residual-mnist" / "metrics.json")
    assert metrics.exists()
    assert "world_size\": 2" in metrics.read_text()
