"""What the benchmarks report about the machine and the server processes they measure (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def machine_line() -> str:
    """The CPU, its count, and the load average when the benchmark starts."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    load1, load5, _ = os.getloadavg()
    return f"{cpu}, {os.cpu_count()} CPUs, load average {load1:.1f}/{load5:.1f} at start"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, its threads and its worker processes (a server's
    master and the workers it spawned), else None."""
    try:
        return sum(_own_cpu_seconds(p) for p in (pid, *children(pid)))
    except OSError:
        return None


def _own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (Granian's and uvicorn's workers are children)."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def workers_rss_mb(pid: int) -> list[float]:
    """RSS of the worker processes under `pid` (or of `pid` itself when it has none), MB."""
    return [rss_mb(k) for k in children(pid)] or [rss_mb(pid)]
