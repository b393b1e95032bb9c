"""The benchmark scripts start the way the Makefile and their usage lines run them.

`bench/` is not an installed package: a script that imports another bench module works only
when run as a module from the checkout (`python -m bench.int8`); run as a file
(`python bench/int8.py`) it stops at its first import.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.service_benchmark import WITHOUT_INT8, repository_of
from modelrepo.card import read_card
from modelrepo.layout import model_folders
from modelrepo.starter import STARTER_SET
from testkit.live_server import REPO_ROOT

BENCH = REPO_ROOT / "bench"
IMPORTS_BENCH = sorted(p.stem for p in BENCH.glob("*.py")
                       if re.search(r"^from bench\.|^import bench\.", p.read_text(), re.MULTILINE))


def test_some_scripts_share_bench_code() -> None:
    assert {"int8", "int8_remedies", "models"} <= set(IMPORTS_BENCH)


@pytest.mark.parametrize("name", IMPORTS_BENCH)
def test_a_script_that_imports_bench_is_run_as_a_module(name: str) -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    usage = (BENCH / f"{name}.py").read_text()
    assert f"bench/{name}.py" not in makefile, f"the Makefile runs bench/{name}.py as a file: use -m bench.{name}"
    assert f"python -m bench.{name}" in usage, f"bench/{name}.py's usage line does not say python -m bench.{name}"
    started = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    assert "usage:" in started.stdout


def test_the_service_benchmark_measures_the_starter_set_without_its_int8_nets(tmp_path) -> None:
    """Its "no int8 nets" server serves links to the fp32 starter models, every one loadable."""
    folders = model_folders(repository_of(WITHOUT_INT8, tmp_path / "no-int8"))
    cards = [read_card(folder) for folder in folders]
    assert sorted(c.id for c in cards) == sorted(m for m in STARTER_SET if read_card(
        REPO_ROOT / "models" / m).precision != "int8")
    assert "cnn-mnist" in WITHOUT_INT8 and "nin-cifar10" in WITHOUT_INT8  # the two it loads


def test_the_memory_benchmark_measures_each_model_in_fresh_processes() -> None:
    """Its row for a real model: the weights as the graph holds them, and a resident cost that
    cannot be less than the weights each way (a measure of the wrong process would give ~0)."""
    done = subprocess.run([sys.executable, str(BENCH / "model_memory.py"), "--only", "cnn-mnist"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| cnn-mnist |"))
    file_mb, weights_mb, prepacked_mb, unpacked_mb, ratio = (float(x) for x in row.strip("|").split("|")[2:])
    assert 0.5 < weights_mb <= file_mb < 1.5  # cnn-mnist: ~0.8 MB of fp32 weights
    assert prepacked_mb >= weights_mb and unpacked_mb >= weights_mb
    assert ratio == pytest.approx(prepacked_mb / weights_mb, rel=0.1)  # the table rounds MB to 0.1
