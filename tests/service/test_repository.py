"""Loading the model repository: a model that cannot serve says why, and the others load."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelrepo.layout import model_folders
from service import machine, repository
from service.settings import Settings
from testkit.live_server import REPO_ROOT

SETTINGS = Settings(providers=("CPUExecutionProvider",), max_batch=4)
NCHW = {"dtype": "float32", "layout": "NCHW"}


def load(folder: Path) -> repository.LoadedModel:
    return repository.load_model(folder, SETTINGS.providers, warm_up_sizes=(1, SETTINGS.max_batch))


def load_error(folder: Path) -> str:
    with pytest.raises(repository.ModelLoadError) as failure:
        load(folder)
    reason = str(failure.value)
    assert reason.startswith(f"{folder.name}: ")
    assert str(folder.parent) not in reason, "a client may read the reason: no server paths in it"
    return reason


def edit_card(folder: Path, **changes) -> None:
    card = json.loads((folder / "card.json").read_text())
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))


def test_a_published_model_loads_and_runs(random_repo: Path) -> None:
    model = load(random_repo / "cnn-mnist")
    assert model.id == "cnn-mnist" and model.provider == "CPUExecutionProvider"
    assert model.spec.kind == "digit" and model.card.classes == [str(d) for d in range(10)]
    logits = model.infer(np.zeros((3, 1, 28, 28), np.float32))
    assert logits.shape == (3, 10)


def test_sessions_plan_no_memory_pattern_per_batch_shape(random_repo: Path) -> None:
    """Dynamic batching makes many batch shapes; a pattern for each kept 80-100 MB more per worker."""
    options = load(random_repo / "cnn-mnist").session.get_session_options()
    assert options.enable_mem_pattern is False


def test_a_models_batch_time_is_its_fastest_call_not_a_busy_cpus(random_repo: Path) -> None:
    """CNNZOO_MAX_BATCH=auto times a batch of one at start-up; other work on the CPU then must
    not decide the batch size for the server's lifetime."""
    model = load(random_repo / "cnn-mnist")
    calls = []

    class Interrupted:  # the real model, descheduled for 20 ms in four calls of five
        card = model.card

        def infer(self, images: np.ndarray) -> np.ndarray:
            calls.append(len(calls))
            if len(calls) != 3:
                time.sleep(0.02)
            return model.infer(images)

    seconds = repository.image_seconds(Interrupted())
    assert len(calls) == 5 and seconds < 0.01
    assert machine.cpu_batch(seconds) > machine.cpu_batch(0.02)


def test_model_folders_are_the_visible_folders(repo_copy: Path) -> None:
    (repo_copy / ".cnn-mnist.partial").mkdir()  # an export in progress
    (repo_copy / "README").write_text("not a model")
    assert [f.name for f in model_folders(repo_copy)] == ["cnn-mnist", "lenet5-cifar10"]
    assert model_folders(repo_copy / "missing") == []


def test_a_damaged_onnx_file_fails_its_checksum(repo_copy: Path) -> None:
    onnx = repo_copy / "cnn-mnist" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-100])
    reason = load_error(repo_copy / "cnn-mnist")
    assert "sha256" in reason and "damaged" in reason


def test_a_file_that_is_not_onnx_is_refused_by_onnx_runtime(repo_copy: Path) -> None:
    # The card vouches for the bytes (the checksum passes), but they are no ONNX graph.
    onnx = repo_copy / "cnn-mnist" / "1" / "model.onnx"
    onnx.write_bytes(b"\x08\x07garbage that is not a protobuf graph" * 100)
    edit_card(repo_copy / "cnn-mnist", onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    assert "ONNX Runtime cannot load the model" in load_error(repo_copy / "cnn-mnist")


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: (d / "card.json").unlink(), "card.json is missing"),
    (lambda d: (d / "card.json").write_text("{not json"), "not a valid card"),
    (lambda d: edit_card(d, classes="0123456789"), "not a valid card"),
    (lambda d: edit_card(d, id="other-model"), "sits in folder"),
    (lambda d: edit_card(d, classes=["a", "b"]), "does not match 2 classes"),
    (lambda d: edit_card(d, preprocessing={"kind": "audio", "mean": [0.1], "std": [0.3]}), "none of 'digit', 'photo'"),
    (lambda d: edit_card(d, input={**NCHW, "name": "image", "shape": [3, 28, 28]},
                         preprocessing={"kind": "digit", "mean": [0.1] * 3, "std": [0.3] * 3}), "not 3"),
    (lambda d: edit_card(d, preprocessing={"kind": "digit", "mean": [0.1, 0.2], "std": [0.3]}), "mean/std"),
    (lambda d: edit_card(d, input={**NCHW, "name": "image", "shape": [1, 32, 32]}), "the card says"),
    (lambda d: edit_card(d, input={**NCHW, "name": "pixels", "shape": [1, 28, 28]}), "are not the card's"),
    (lambda d: (d / "1" / "model.onnx").unlink(), "cannot be read"),
])
def test_a_model_whose_card_or_files_do_not_fit_is_unavailable(repo_copy: Path, change, reason: str) -> None:
    change(repo_copy / "cnn-mnist")
    assert reason in load_error(repo_copy / "cnn-mnist")


# Run in a fresh interpreter: RSS never falls back, so other tests' allocations would hide it.
_ARENA_PROBE = """
import os
import sys
from pathlib import Path
import numpy as np
from service.repository import load_model
from testkit.measure import rss_mb

folder, me = Path(sys.argv[1]), os.getpid()
first, second = (load_model(folder, ("CPUExecutionProvider",), ort_threads=1) for _ in range(2))
batch = np.zeros((32, *first.card.input.shape), np.float32)
start = rss_mb(me); first.infer(batch)
middle = rss_mb(me); second.infer(batch)
print(middle - start, rss_mb(me) - middle)
"""


def test_sessions_share_one_cpu_arena() -> None:
    """A second model's large batch reuses the memory the first one's left in the arena."""
    folder = REPO_ROOT / "models" / "nin-cifar10"  # batch 32 needs ~60 MB of activations
    probe = subprocess.run([sys.executable, "-c", _ARENA_PROBE, str(folder)], capture_output=True, text=True,
                           cwd=REPO_ROOT, check=True)
    first_mb, second_mb = map(float, probe.stdout.split())
    assert first_mb > 20, f"the first batch grew RSS by only {first_mb:.0f} MB: nothing to share"
    assert second_mb < first_mb / 4, (f"the second session grew RSS by {second_mb:.0f} MB after the first's "
                                      f"{first_mb:.0f} MB: it did not reuse the shared arena")


_TRIM_PROBE = """
import os
from service.repository import release_freed_heap
from testkit.measure import rss_mb

me = os.getpid()
# 200 MB in 1 KB blocks (malloc's, not Python's small-object allocator), every 50th kept, so the
# freed memory lies between live blocks where glibc cannot give it back on its own.
blocks = [bytes(1024) for _ in range(200_000)]
kept = blocks[::50]
del blocks
before = rss_mb(me)
released = release_freed_heap()
print(released, before - rss_mb(me))
"""


def test_freed_heap_goes_back_to_the_system() -> None:
    """What loading freed between live blocks leaves the process once the catalog has loaded."""
    probe = subprocess.run([sys.executable, "-c", _TRIM_PROBE], capture_output=True, text=True,
                           cwd=REPO_ROOT, check=True)
    released, dropped_mb = probe.stdout.split()
    assert released == "True", "glibc's malloc_trim was not found"
    assert float(dropped_mb) > 100, f"RSS fell by only {float(dropped_mb):.0f} MB of ~200 MB freed"
