"""The model repository (`models/`, see docs/model-repository.md) as the service holds it.

Each `models/<id>/` becomes a `ServedModel`: its card, read and checked; its ONNX file,
checked against the card's sha256; an ONNX Runtime session on the first provider that
starts, warmed up. A model that fails any step is `unavailable`, with the reason, and
the others serve.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import onnxruntime as ort
from PIL import Image

from service.batching import Batcher
from service.preprocess import InputSpec, preprocess
from service.schemas import Card, ModelStatus
from service.settings import Settings

log = logging.getLogger("service.repository")

CARD_FILE = "card.json"
MODEL_FILE = Path("1") / "model.onnx"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ModelLoadError(Exception):
    """One model cannot be served; the message says why."""


@dataclass
class ServedModel:
    id: str
    folder: Path
    status: ModelStatus = "loading"
    error: str | None = None
    card: Card | None = None
    spec: InputSpec | None = None
    session: ort.InferenceSession | None = None
    provider: str | None = None
    batcher: Batcher | None = None

    def infer(self, images: np.ndarray) -> np.ndarray:
        """N×C×H×W normalised float32 -> N×K logits (runs in a worker thread; loaded models only)."""
        return self.session.run([self.card.output.name], {self.card.input.name: images})[0]

    def classify(self, images: np.ndarray) -> np.ndarray:
        """N×C×H×W -> N×K probabilities, softmax included: the batch's worker thread does it all."""
        return softmax(self.infer(images))


def softmax(logits: np.ndarray) -> np.ndarray:
    """N×K logits -> N×K probabilities (float64), computed stably."""
    exp = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def discover(repository: Path) -> list[ServedModel]:
    """One entry per model folder; hidden folders (an export in progress) are skipped."""
    if not repository.is_dir():
        log.warning("model repository %s does not exist: no models to serve", repository)
        return []
    return [ServedModel(id=folder.name, folder=folder) for folder in sorted(repository.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")]


def read_card(folder: Path) -> Card:
    """card.json, type-checked, with everything serving needs present and consistent."""
    path = folder / CARD_FILE
    try:
        card = msgspec.json.decode(path.read_bytes(), type=Card)
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as err:
        raise ModelLoadError(f"{path} is not a valid card: {err}") from None
    missing = [name for name in ("classes", "input", "output", "preprocessing", "onnx_sha256")
               if getattr(card, name) is None]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    if card.id != folder.name:
        raise ModelLoadError(f"{path} says id {card.id!r} but sits in folder {folder.name!r}")
    if card.output.shape != [len(card.classes)]:
        raise ModelLoadError(f"{path}: output shape {card.output.shape} does not match "
                             f"{len(card.classes)} classes")
    return card


def input_spec(card: Card) -> InputSpec:
    try:
        return InputSpec.from_card(card)
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"{card.id}: unusable input/preprocessing in the card: {err}") from None


def verified_onnx(folder: Path, card: Card) -> bytes:
    """The ONNX file's bytes, refused unless their sha256 is the card's."""
    path = folder / MODEL_FILE
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise ModelLoadError(f"{path} cannot be read: {err}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.onnx_sha256:
        raise ModelLoadError(f"{path} has sha256 {digest[:12]}..., the card says "
                             f"{card.onnx_sha256[:12]}...: the file is damaged or not the one exported")
    return blob


def open_session(blob: bytes, card: Card, providers: tuple[str, ...], ort_threads: int) -> ort.InferenceSession:
    """A session on the first provider of `providers` that starts, checked against the card."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = ort_threads
    # Idle ONNX Runtime threads spin by default, stealing the CPU from the event loop.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    usable = [p for p in providers if p in available] or [CPU]
    try:
        session = ort.InferenceSession(blob, options, providers=usable)
    except Exception as err:  # noqa: BLE001 - ORT raises its own hierarchy for bad graphs
        raise ModelLoadError(f"{card.id}: ONNX Runtime cannot load the model: {err}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [card.input.name] or card.output.name not in [o.name for o in outputs]:
        raise ModelLoadError(f"{card.id}: the graph's input/output names {[i.name for i in inputs]}/"
                             f"{[o.name for o in outputs]} are not the card's "
                             f"{card.input.name!r}/{card.output.name!r}")
    if list(inputs[0].shape[1:]) != card.input.shape:
        raise ModelLoadError(f"{card.id}: the graph takes {inputs[0].shape}, the card says "
                             f"[batch, {', '.join(map(str, card.input.shape))}]")
    return session


def warm_up(model: ServedModel, sizes: tuple[int, ...]) -> None:
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


def load(model: ServedModel, settings: Settings, providers: tuple[str, ...]) -> None:
    """Card, checksum, session, warm-up (in a worker thread). On failure the model is marked
    unavailable; on success it keeps status "loading" until the app gives it a batcher."""
    try:
        model.card = read_card(model.folder)
        model.spec = input_spec(model.card)
        blob = verified_onnx(model.folder, model.card)
        model.session = open_session(blob, model.card, providers, settings.ort_threads)
        model.provider = model.session.get_providers()[0]
        warm_up(model, (1, settings.max_batch) if settings.batching else (1,))
    except Exception as err:  # noqa: BLE001 - one broken model must not stop the others
        reason = str(err) if isinstance(err, ModelLoadError) else f"{model.id}: {type(err).__name__}: {err}"
        model.status, model.error, model.session = "unavailable", reason, None
        log.error("model %s unavailable: %s", model.id, reason)


def preload_cuda(providers: tuple[str, ...]) -> None:
    """Let ONNX Runtime find CUDA/cuDNN libraries installed as Python packages, if any."""
    if CUDA in providers and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as err:  # noqa: BLE001 - no libraries: the CPU fallback still works
            log.info("no CUDA libraries to preload (%s)", err)


def after_fallback(providers: tuple[str, ...], model: ServedModel) -> tuple[str, ...]:
    """Once one session has fallen back from CUDA, the next ones need not try it again
    (each try prints ONNX Runtime's own error)."""
    if model.provider and providers[0] == CUDA and model.provider != CUDA:
        if CUDA in ort.get_available_providers():
            log.warning("asked for %s, but ONNX Runtime runs %s on %s (no GPU or no CUDA "
                        "libraries?): serving on the CPU", CUDA, model.id, model.provider)
        else:  # plain onnxruntime, as in the CPU image: nothing went wrong
            log.info("this onnxruntime build has no %s: serving on the CPU", CUDA)
        return tuple(p for p in providers if p != CUDA) or (CPU,)
    return providers
