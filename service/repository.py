"""Loading one model of the repository (`models/<id>/`, see docs/model-repository.md).

`load_model` reads and checks the card, checks the ONNX file against the card's sha256,
opens an ONNX Runtime session on the first provider that starts, reads back where it really
runs, and warms it up. It returns an immutable `LoadedModel` or raises `ModelLoadError` with
the reason (in words a client may read: the model id and what is wrong, never a server path).
What the service does with either is the catalog's business.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from modelrepo.card import Card, CardError, read_card
from modelrepo.layout import MODEL_FILE
from modelrepo.numerics import softmax
from modelrepo.providers import CPU, CUDA
from service.preprocess import InputSpec, preprocess

log = logging.getLogger("service.repository")


class ModelLoadError(Exception):
    """One model cannot be served; the message says why. `card` is set if it was readable."""

    def __init__(self, reason: str, card: Card | None = None) -> None:
        super().__init__(reason)
        self.card = card


@dataclass(frozen=True)
class LoadedModel:
    id: str
    card: Card
    spec: InputSpec
    session: ort.InferenceSession
    provider: str  # where the session really runs, as ONNX Runtime reports it

    def infer(self, images: np.ndarray) -> np.ndarray:
        """N×C×H×W normalised float32 -> N×K logits (runs in a worker thread)."""
        return self.session.run([self.card.output.name], {self.card.input.name: images})[0]

    def classify(self, images: np.ndarray) -> np.ndarray:
        """N×C×H×W -> N×K probabilities, softmax included: the batch's worker thread does it all."""
        return softmax(self.infer(images))

    def score(self, images: np.ndarray) -> Scores:
        """N×C×H×W -> logits and probabilities, each computed once (what the batcher runs)."""
        logits = self.infer(images)
        return Scores(logits, softmax(logits))


@dataclass(frozen=True)
class Scores:
    """A batch's answers; `scores[row]` is one image's, as the batcher hands each request its row."""

    logits: np.ndarray  # K or N×K float32, as the graph computes them
    probabilities: np.ndarray  # float64, softmax of the logits: what /predict reports

    def __getitem__(self, row: int) -> Scores:
        return Scores(self.logits[row], self.probabilities[row])


def load_model(folder: Path, providers: tuple[str, ...], *, ort_threads: int = 0,
               warm_up_sizes: tuple[int, ...] = (1,)) -> LoadedModel:
    """Card, checksum, session, warm-up (blocking: call it in a worker thread)."""
    model_id = folder.name
    try:
        card = read_card(folder)
    except CardError as err:
        raise ModelLoadError(f"{model_id}: {err}") from None
    try:
        spec = InputSpec.from_card(card)
        session = open_session(verified_onnx(folder, card), card, providers, ort_threads)
        model = LoadedModel(model_id, card, spec, session, session.get_providers()[0])
        warm_up(model, warm_up_sizes)
    except ModelLoadError as err:
        raise ModelLoadError(str(err), card) from None
    except (ValueError, TypeError) as err:  # InputSpec.from_card
        raise ModelLoadError(f"{model_id}: unusable input/preprocessing in the card: {err}", card) from None
    return model


def verified_onnx(folder: Path, card: Card) -> Path:
    """The ONNX file, refused unless its sha256 is the card's. ONNX Runtime then opens the file
    itself: handed the bytes instead, a worker kept 53 MB more of the starter set resident
    (AlexNet's 30 MB above all). A file replaced between the check and the load would go
    unchecked: the repository is read-only while served (the container mounts it so)."""
    path = folder / MODEL_FILE
    try:
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as err:
        raise ModelLoadError(f"{card.id}: {MODEL_FILE.as_posix()} cannot be read ({err.strerror})") from None
    if digest != card.onnx_sha256:
        raise ModelLoadError(f"{card.id}: {MODEL_FILE.as_posix()} has sha256 {digest[:12]}..., the card says "
                             f"{card.onnx_sha256[:12]}...: the file is damaged or not the one exported")
    return path


def open_session(onnx: Path, card: Card, providers: tuple[str, ...], ort_threads: int) -> ort.InferenceSession:
    """A session on the first provider of `providers` that starts, checked against the card."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = ort_threads
    # Idle ONNX Runtime threads spin by default, stealing the CPU from the event loop.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    share_cpu_arena(options)
    # No memory patterns: a pattern is one block per input shape for all of a run's tensors, and
    # dynamic batching makes many shapes, run at once by several threads. Without them a worker
    # ended a load 80-100 MB smaller, at <= 4 % of the ORT call (docs/results.md, 2026-12-04).
    options.enable_mem_pattern = False
    available = set(ort.get_available_providers())
    usable = [p for p in providers if p in available] or [CPU]
    try:
        session = ort.InferenceSession(str(onnx), options, providers=usable)
    except Exception as err:  # noqa: BLE001 - ORT raises its own hierarchy for bad graphs
        log.error("%s: ONNX Runtime cannot load the model: %r", card.id, err)
        raise ModelLoadError(f"{card.id}: ONNX Runtime cannot load the model (the server log has details)") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [card.input.name] or card.output.name not in [o.name for o in outputs]:
        raise ModelLoadError(f"{card.id}: the graph's input/output names {[i.name for i in inputs]}/"
                             f"{[o.name for o in outputs]} are not the card's "
                             f"{card.input.name!r}/{card.output.name!r}")
    if list(inputs[0].shape[1:]) != card.input.shape:
        raise ModelLoadError(f"{card.id}: the graph takes {inputs[0].shape}, the card says "
                             f"[batch, {', '.join(map(str, card.input.shape))}]")
    return session


def share_cpu_arena(options: ort.SessionOptions) -> None:
    """The session takes its CPU memory from one arena for the whole process. Each session's own
    arena would keep its model's largest batch for good, once per model; the shared one keeps the
    largest batch of any (docs/results.md, "ONNX Runtime's CPU arena, shared")."""
    _register_shared_cpu_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")


@functools.cache
def _register_shared_cpu_arena() -> None:
    cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # Grown by what a run asks for, not to the next power of two: the arena holds no more than it needed.
    same_as_requested = 1
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, same_as_requested, -1, -1))


def release_freed_heap() -> bool:
    """Hand the heap that loading freed back to the system (glibc's `malloc_trim`): parsing a
    model and laying out its weights frees memory between blocks that stay, which glibc keeps.
    AlexNet fp32 alone: 79 MB resident after loading, 39 MB after the trim; a worker at ready
    with the starter set of early 2026-12-04 (AlexNet fp32 in it): 261 MB, 245-250 MB with the
    trim. False where the C library has no `malloc_trim` (musl, macOS)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:  # find_library asks ldconfig, which a slim image may lack
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def warm_up(model: LoadedModel, sizes: tuple[int, ...]) -> None:
    """Preprocess a blank PNG and run zero batches of each size once, so the first requests
    pay neither for Pillow's plugin loading nor for ONNX Runtime's allocations."""
    blank = io.BytesIO()
    Image.new("L", (model.spec.width, model.spec.height)).save(blank, "PNG")
    preprocess(blank.getvalue(), model.spec, max_pixels=model.spec.width * model.spec.height)
    for size in sizes:
        logits = model.infer(np.zeros((size, *model.card.input.shape), dtype=np.float32))
        if logits.shape != (size, len(model.card.classes)) or not np.isfinite(logits).all():
            raise ModelLoadError(f"{model.id}: warm-up gave logits of shape {logits.shape} "
                                 f"(finite: {bool(np.isfinite(logits).all())})")


def image_seconds(model: LoadedModel, runs: int = 5) -> float:
    """The fastest of a few batches of one (after `warm_up`), for CNNZOO_MAX_BATCH=auto. Other
    work on the CPU only ever adds time, so the fastest call is the model's own cost: a median
    taken while the machine was busy gave tiny models small batches for the server's lifetime."""
    x = np.zeros((1, *model.card.input.shape), dtype=np.float32)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.infer(x)
        times.append(time.perf_counter() - start)
    return min(times)


def preload_cuda(providers: tuple[str, ...]) -> None:
    """Let ONNX Runtime find CUDA/cuDNN libraries installed as Python packages, if any."""
    if CUDA in providers and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as err:  # noqa: BLE001 - no libraries: the CPU fallback still works
            log.info("no CUDA libraries to preload (%s)", err)


def after_fallback(providers: tuple[str, ...], model: LoadedModel) -> tuple[str, ...]:
    """Once one session has fallen back from CUDA, the next ones need not try it again
    (each try prints ONNX Runtime's own error)."""
    if providers[0] == CUDA and model.provider != CUDA:
        if CUDA in ort.get_available_providers():
            log.warning("asked for %s, but ONNX Runtime runs %s on %s (no GPU or no CUDA "
                        "libraries?): serving on the CPU", CUDA, model.id, model.provider)
        else:  # plain onnxruntime, as in the CPU image: nothing went wrong
            log.info("this onnxruntime build has no %s: serving on the CPU", CUDA)
        return tuple(p for p in providers if p != CUDA) or (CPU,)
    return providers
