"""INT8 variants: a published fp32 model `models/<id>/` -> `models/<id>-int8/`, by ONNX Runtime's
static quantization, published only when it passes the int8 gate (`export/int8_gate.py`).

1. Prepare: `quant_pre_process` runs ONNX Runtime's basic optimizer first (BatchNorm folded into
   the convolutions, constants folded), so the ranges are measured on the graph that is quantized.
2. Calibrate on a seeded sample of the *training* split, once per method (MinMax, Entropy,
   Percentile); ranges are collected chunk by chunk, so memory holds one chunk's activations.
3. Quantize each candidate (method x scheme) and measure it against the fp32 model on other,
   held-out training images; the one that agrees with the fp32 model most often wins, the more
   accurate of equals. Agreement is the paired measure of what quantizing changed: on 2,000 images
   an int8 accuracy lands a few tenths of a point above or below the fp32 one by chance (both were
   seen). Choosing on test images would tune the model to the very images that then judge it.
4. The winner goes through the int8 gate on the test split; the folder is published whole or not
   at all, and its card records the scheme, the calibration, the gate and every candidate.

Why the scheme is QDQ, U8S8, per-channel, with reduce_range on this project's CPU (AVX2, no VNNI):
see docs/results.md, "INT8 quantization", and `bench/int8_remedies.py`, which measures each choice.
No torch here: the images come in as uint8 arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.errors import Int8GateFailed, NotQuantizable
from export.int8_gate import Comparison, compare, int8_gate
from export.model_folder import embed_metadata, install, sha256_file, write_model_files
from modelrepo.card import (Calibration, Card, CardError, ModelMetadata, Preprocessing, QuantCandidate,
                            Quantization, QuantScheme, metadata_dict, read_card)
from modelrepo.layout import INPUT_NAME, MODEL_FILE, OUTPUT_NAME
from modelrepo.providers import CPU

INT8_SUFFIX = "-int8"
METHODS = ("MinMax", "Entropy", "Percentile")
# On x86 ONNX Runtime fuses QDQ groups fully only with uint8 activations (S8S8 leaves most of
# ResNet's convolutions and residual adds in float; forced s8s8 kernels run at a sixth of fp32's
# speed on AVX2), and without VNNI its u8 x s8 kernel adds products in pairs into int16, which
# full-range weights saturate; reduce_range (7-bit weights) cannot. U8U8 does not saturate but
# is slower. Measured: docs/results.md, "INT8 quantization".
SCHEMES = (QuantScheme(format="QDQ", activation_type="uint8", weight_type="int8", per_channel=True,
                       reduce_range=True),)
CALIBRATION_IMAGES = 1000
SELECTION_IMAGES = 2000
SEED = 0
# Calibration images run and collected at once: the activations of all of them are held in memory
# (ResNet18 with its mirror image: ~11 MB an image).
CALIBRATION_BATCH = 128
EVAL_BATCH = 250

_FORMATS = {"QDQ": QuantFormat.QDQ, "QOperator": QuantFormat.QOperator}
_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


@dataclass(frozen=True)
class LabelledImages:
    pixels: np.ndarray  # uint8, N x C x H x W, as the dataset stores them
    labels: np.ndarray  # int, N

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray | slice) -> LabelledImages:
        return LabelledImages(self.pixels[indices], self.labels[indices])


def int8_id(model_id: str) -> str:
    return f"{model_id}{INT8_SUFFIX}"


def normalised(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 N x C x H x W -> the graph's input: x / 255, then (x - mean) / std, in float32 as in training."""
    mean = np.asarray(preprocessing.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing.std, np.float32).reshape(1, -1, 1, 1)
    return ((pixels.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)


def cpu_session(path: Path | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=[CPU])


def logits_of(session: ort.InferenceSession, inputs: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: inputs[i:i + batch]})[0]
                           for i in range(0, len(inputs), batch)])


class CalibrationBatches(CalibrationDataReader):
    """Calibration inputs in batches. With `CalibStridedMinMax` = 1, ONNX Runtime collects one batch
    at a time (`set_range`), merging its ranges or histograms into those of the batches before."""

    def __init__(self, inputs: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        self.batches = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._pending, None)
        return None if batch is None else {INPUT_NAME: batch}


def prepare(fp32_onnx: Path, prepared: Path) -> None:
    """Shape inference and ONNX Runtime's basic optimizer, as ONNX Runtime advises before quantizing,
    then one copy of each weight. Symbolic shape inference is skipped: these graphs have static
    shapes but for the batch axis."""
    quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
    proto = onnx.load(str(prepared))
    if share_identical_initializers(proto.graph):
        onnx.save(proto, str(prepared))


def share_identical_initializers(graph: onnx.GraphProto) -> int:
    """Point every use of identical initializers at the first of them; returns how many went.

    A test-time-flip graph runs the same net twice on shared weights, but folding BatchNorm into
    each Conv node writes a fused copy per node: without this, ResNet18's int8 file is 22.6 MB
    instead of 11.3 (and its prepared fp32 graph 89 MB instead of 45)."""
    first: dict[tuple, str] = {}
    renamed: dict[str, str] = {}
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).digest())
        renamed[tensor.name] = first.setdefault(key, tensor.name)
    duplicates = {name for name, kept in renamed.items() if name != kept}
    for node in graph.node:
        node.input[:] = [renamed[name] if name in duplicates else name for name in node.input]
    kept = [t for t in graph.initializer if t.name not in duplicates]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(duplicates)


def quantize_onnx(prepared: Path, output: Path, calibration: CalibrationBatches, method: str,
                  scheme: QuantScheme, *, cache: Path | None = None, extra_options: dict | None = None) -> None:
    """`quantize_static` with `scheme`; `cache` keeps one method's ranges for the next scheme
    (the ranges do not depend on the integer types, so they are computed once per method)."""
    with contextlib.redirect_stdout(io.StringIO()):  # its histogram collector prints progress
        quantize_static(str(prepared), str(output), calibration, quant_format=_FORMATS[scheme.format],
                        per_channel=scheme.per_channel, reduce_range=scheme.reduce_range,
                        activation_type=_TYPES[scheme.activation_type], weight_type=_TYPES[scheme.weight_type],
                        calibrate_method=CalibrationMethod[method],
                        extra_options={"CalibStridedMinMax": 1, **(extra_options or {})},
                        calibration_cache_path=str(cache) if cache else None)


def calibration_split(train: LabelledImages, calibration_images: int, selection_images: int,
                      seed: int) -> tuple[LabelledImages, LabelledImages]:
    """Two disjoint seeded samples of the training split: for calibrating, and for choosing."""
    if calibration_images < 1 or selection_images < 1:
        raise ValueError("calibration and selection need at least one image each")
    if calibration_images + selection_images > len(train):
        raise NotQuantizable(f"{calibration_images} calibration + {selection_images} selection images asked "
                             f"for, but the training split holds {len(train)}")
    order = np.random.default_rng(seed).permutation(len(train))
    return (train.take(order[:calibration_images]),
            train.take(order[calibration_images:calibration_images + selection_images]))


def source_card(folder: Path) -> Card:
    """The fp32 model to quantize, checked: readable, fp32, gated, and its file the card's."""
    try:
        card = read_card(folder)
    except CardError as err:
        raise NotQuantizable(f"{folder}: {err}") from None
    if card.precision != "fp32":
        raise NotQuantizable(f"{folder}: already {card.precision}; quantize its fp32 model instead")
    if card.parity is None or not card.parity.passed:
        raise NotQuantizable(f"{folder}: the fp32 model carries no passed parity gate")
    if sha256_file(folder / MODEL_FILE) != card.onnx_sha256:
        raise NotQuantizable(f"{folder}: {MODEL_FILE} is not the file its card describes")
    return card


def quantize_model(fp32_folder: Path, repo_dir: Path, *, train: LabelledImages, test: LabelledImages,
                   calibration_images: int = CALIBRATION_IMAGES, selection_images: int = SELECTION_IMAGES,
                   methods: Sequence[str] = METHODS, schemes: Sequence[QuantScheme] = SCHEMES,
                   seed: int = SEED, progress: bool = True) -> Path:
    """Quantize the fp32 model in `fp32_folder`, gate it on `test`, publish `repo_dir/<id>-int8/`.

    `train` is the training split (calibration and choice draw from it), `test` the images of the
    gate (published models: the whole test split). Returns the published folder. Raises
    NotQuantizable or Int8GateFailed (with `.report`), publishing nothing.
    """
    fp32_folder = Path(fp32_folder)
    card = source_card(fp32_folder)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"calibration methods must be some of {', '.join(METHODS)}, got {list(methods)}")
    if not schemes:
        raise ValueError("no scheme to quantize with")
    calibration, selection = calibration_split(train, calibration_images, selection_images, seed)
    say = _reporter(progress, card.id)
    fp32 = cpu_session(fp32_folder / MODEL_FILE)
    selection_inputs = normalised(selection.pixels, card.preprocessing)
    fp32_on_selection = logits_of(fp32, selection_inputs)
    reader = CalibrationBatches(normalised(calibration.pixels, card.preprocessing))

    with tempfile.TemporaryDirectory(prefix=f"quantize-{card.id}-") as tmp:
        work = Path(tmp)
        prepare(fp32_folder / MODEL_FILE, work / "prepared.onnx")
        tried: list[tuple[QuantCandidate, Path]] = []
        for method in methods:
            for number, scheme in enumerate(schemes):
                path = work / f"{method}-{number}.onnx"
                say(f"{method} calibration on {len(calibration)} training images, {scheme.label()}")
                quantize_onnx(work / "prepared.onnx", path, reader, method, scheme, cache=work / f"{method}.ranges")
                measured = compare(fp32_on_selection, logits_of(cpu_session(path), selection_inputs),
                                   selection.labels)
                say(f"  held out {measured.images}: int8 {100 * measured.int8_accuracy:.2f} % "
                    f"(fp32 {100 * measured.fp32_accuracy:.2f} %), agreement {100 * measured.top1_agreement:.2f} %")
                tried.append((candidate(method, scheme, measured), path))
        # max() keeps the first of equals: the order of `methods`, then of `schemes`, breaks ties.
        chosen, chosen_path = max(tried, key=lambda t: (t[0].top1_agreement, t[0].int8_accuracy))
        say(f"chosen: {chosen.method}, {chosen.scheme.label()}; gate on {len(test)} test images")

        test_inputs = normalised(test.pixels, card.preprocessing)
        gate = int8_gate(compare(logits_of(fp32, test_inputs), logits_of(cpu_session(chosen_path), test_inputs),
                                 test.labels), model_id=int8_id(card.id))
        if not gate.passed:
            raise Int8GateFailed(gate)
        quantization = Quantization(
            source_model=card.id, source_onnx_sha256=card.onnx_sha256,
            quantizer=f"onnxruntime {ort.__version__} quantize_static, after quant_pre_process",
            scheme=chosen.scheme,
            calibration=Calibration(method=chosen.method, images=len(calibration), split="train", seed=seed),
            gate=gate, candidates=[c for c, _ in tried])
        return _publish(chosen_path, card, quantization, repo_dir, work)


def candidate(method: str, scheme: QuantScheme, measured: Comparison) -> QuantCandidate:
    return QuantCandidate(method=method, scheme=scheme, images=measured.images, split="train",
                          fp32_accuracy=measured.fp32_accuracy, int8_accuracy=measured.int8_accuracy,
                          top1_agreement=measured.top1_agreement)


def _publish(int8_onnx: Path, fp32_card: Card, quantization: Quantization, repo_dir: Path, work: Path) -> Path:
    """The fp32 card's metadata, as the int8 model's, embedded in its file; then the folder, whole."""
    fields = {f: getattr(fp32_card, f) for f in ModelMetadata.__struct_fields__}
    metadata = msgspec.structs.replace(
        ModelMetadata(**fields), id=int8_id(fp32_card.id), precision="int8",
        test_accuracy=quantization.gate.int8_accuracy, exported=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    staged = work / metadata.id
    (staged / MODEL_FILE).parent.mkdir(parents=True)
    proto = onnx.load(str(int8_onnx))
    del proto.metadata_props[:]  # the fp32 file's, and the pre-processor's marker (not JSON)
    embed_metadata(proto, metadata_dict(metadata))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(staged / MODEL_FILE))
    write_model_files(staged, metadata, quantization=quantization)
    return install(staged, Path(repo_dir) / metadata.id)


def _reporter(progress: bool, model_id: str):
    def say(line: str) -> None:
        if progress:
            print(f"quantize {model_id}: {line}", file=sys.stderr, flush=True)
    return say
