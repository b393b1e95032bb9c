"""`card.json`: what a model is, how to feed it, how it was made and checked.

`ModelMetadata` is everything known before the ONNX file exists; export embeds it in the
file's `metadata_props`. `Card` adds what only the finished file and its gate can say. Export
writes a `Card` with `write_card`; the service reads it with `read_card`, which also checks
that the card is consistent, and raises `CardError` naming what is wrong (never a path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from modelrepo.layout import CARD_FILE


class CardError(ValueError):
    """A card that is missing, malformed or inconsistent; the message says which."""


class ModelInput(msgspec.Struct):
    name: str
    shape: list[int]  # C, H, W (the batch axis is left out)
    dtype: Literal["float32"]
    layout: Literal["NCHW"]


class ModelOutput(msgspec.Struct):
    name: str
    shape: list[int]  # [number of classes]


class Preprocessing(msgspec.Struct):
    kind: str  # how an uploaded image becomes the input; the service's table of kinds decides which it knows
    mean: list[float]
    std: list[float]


class TrainingSummary(msgspec.Struct, kw_only=True):
    """The training run's own figures (`runs/<id>/metrics.json`); null where it recorded none."""

    epochs: int | None = None
    wall_seconds: float | None = None
    train_seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    recipe: dict[str, Any] | None = None
    budget: str | None = None  # "full" or "cpu": which row of the recipe table
    final_evaluation: list[dict[str, Any]] | None = None  # each recipe choice measured on the finished run
    git_commit: str | None = None
    parameters: int | None = None
    finished: str | None = None


class ProviderParity(msgspec.Struct):
    """How one ONNX Runtime provider compared with the PyTorch reference."""

    provider: str
    max_abs_logit_diff: float
    max_abs_prob_diff: float  # after softmax
    argmax_agreement: float  # fraction of images where both predict the same class
    onnx_accuracy: float
    logit_tolerance: float
    passed: bool


class ParityReport(msgspec.Struct):
    """The fp32 parity gate: PyTorch and ONNX Runtime on the same real test images."""

    model_id: str
    images: int
    split: str
    reference: str  # what computed the reference logits
    torch_accuracy: float
    providers: list[ProviderParity]
    passed: bool

    def summary(self) -> str:
        lines = [f"parity of {self.model_id} on {self.images} {self.split} images; "
                 f"reference: {self.reference}, accuracy {100 * self.torch_accuracy:.2f} %",
                 f"  {'provider':22} {'max|dlogit|':>11} {'tolerance':>9} {'max|dprob|':>10} "
                 f"{'argmax agree':>12} {'ORT accuracy':>12}  result"]
        for p in self.providers:
            lines.append(f"  {p.provider:22} {p.max_abs_logit_diff:11.3e} {p.logit_tolerance:9.0e} "
                         f"{p.max_abs_prob_diff:10.3e} {100 * p.argmax_agreement:11.2f}% "
                         f"{100 * p.onnx_accuracy:11.2f}%  {'pass' if p.passed else 'FAIL'}")
        return "\n".join(lines)


class QuantScheme(msgspec.Struct, frozen=True, kw_only=True):
    """What ONNX Runtime's `quantize_static` was asked for, apart from the calibration."""

    format: Literal["QDQ", "QOperator"]
    activation_type: Literal["uint8", "int8"]
    weight_type: Literal["int8", "uint8"]
    per_channel: bool
    # 7-bit weights: an AVX2 CPU without VNNI sums u8 x s8 products in pairs into int16, which
    # full-range weights can saturate (docs/model-repository.md, "The int8 gate").
    reduce_range: bool

    def label(self) -> str:
        """ONNX Runtime's own shorthand: "QDQ U8S8, per-channel, reduce_range" (activations first)."""
        short = {"uint8": "U8", "int8": "S8"}
        return (f"{self.format} {short[self.activation_type]}{short[self.weight_type]}"
                f"{', per-channel' if self.per_channel else ''}{', reduce_range' if self.reduce_range else ''}")


class Calibration(msgspec.Struct):
    method: Literal["MinMax", "Entropy", "Percentile"]  # ONNX Runtime's CalibrationMethod
    images: int
    split: Literal["train"]  # never test images
    seed: int  # of the permutation of the training split the images were drawn from


class QuantCandidate(msgspec.Struct, kw_only=True):
    """One setting tried, measured against the fp32 model on held-out training images (never the
    calibration images, never test images): the choice among candidates leaks nothing into the gate."""

    method: Literal["MinMax", "Entropy", "Percentile"]
    scheme: QuantScheme
    images: int
    split: Literal["train"]
    fp32_accuracy: float
    int8_accuracy: float
    top1_agreement: float


class Int8Gate(msgspec.Struct, kw_only=True):
    """The int8 gate, which replaces the fp32 parity gate: the int8 model against its fp32 model,
    both on ONNX Runtime's CPU provider, on the same real test images."""

    model_id: str
    images: int
    split: Literal["test"]
    fp32_accuracy: float
    int8_accuracy: float
    top1_agreement: float  # fraction of images where int8 and fp32 predict the same class
    max_accuracy_drop: float  # the limits it was held to
    min_top1_agreement: float
    cpu: str  # int8 kernels differ by instruction set, so the figures hold for this CPU
    passed: bool

    def summary(self) -> str:
        drop = 100 * (self.fp32_accuracy - self.int8_accuracy)
        return (f"int8 gate of {self.model_id} on {self.images} {self.split} images ({self.cpu}): "
                f"fp32 {100 * self.fp32_accuracy:.2f} %, int8 {100 * self.int8_accuracy:.2f} % "
                f"(drop {drop:.2f} points, limit {100 * self.max_accuracy_drop:.2f}); top-1 agreement "
                f"{100 * self.top1_agreement:.2f} % (limit {100 * self.min_top1_agreement:.0f} %): "
                f"{'pass' if self.passed else 'FAIL'}")


class Quantization(msgspec.Struct, kw_only=True):
    """How an int8 model was made from its fp32 model, and the gate it passed instead of parity."""

    source_model: str  # the fp32 model's id
    source_onnx_sha256: str
    quantizer: str  # the tool and its version
    scheme: QuantScheme
    calibration: Calibration
    gate: Int8Gate
    candidates: list[QuantCandidate]  # every setting tried; the chosen one matches scheme and method

    def summary(self) -> str:
        return (f"{self.scheme.label()}, {self.calibration.method} calibration on "
                f"{self.calibration.images} training images\n{self.gate.summary()}")


class ModelMetadata(msgspec.Struct, kw_only=True):
    """What travels inside the ONNX file (`metadata_props`), and the core of the card."""

    id: str
    arch: str
    dataset: str
    description: str  # the architecture's summary and its paper
    classes: list[str]
    input: ModelInput
    output: ModelOutput
    preprocessing: Preprocessing
    precision: Literal["fp32", "int8"] = "fp32"  # what the graph computes in
    test_time_augmentation: str = "none"  # "hflip": the graph averages the image and its mirror image
    test_accuracy: float | None = None  # fraction, full real test set, of this very graph's model
    weights_sha256: str | None = None  # of the run's weights.safetensors
    training: TrainingSummary | None = None
    exporter: dict[str, str | int] | None = None
    exported: str | None = None


class Card(ModelMetadata, kw_only=True):
    onnx_sha256: str
    onnx_bytes: int
    parity: ParityReport | None = None  # fp32 models
    quantization: Quantization | None = None  # int8 models: their gate replaces parity


def encode_card(card: Card) -> bytes:
    return msgspec.json.format(msgspec.json.encode(card), indent=2) + b"\n"


def write_card(folder: Path, card: Card) -> None:
    (folder / CARD_FILE).write_bytes(encode_card(card))


# What only the finished file and its gate can say: in the card, not inside the file.
FILE_FIELDS = ("onnx_sha256", "onnx_bytes", "parity", "quantization")


def metadata_dict(metadata: ModelMetadata) -> dict[str, Any]:
    """The metadata as plain JSON values, field by field (what `metadata_props` stores); for a
    whole card, the part that is embedded in its ONNX file."""
    return {k: v for k, v in msgspec.to_builtins(metadata).items() if k not in FILE_FIELDS}


def read_card(folder: Path) -> Card:
    """`folder/card.json`, type-checked and consistent with its folder and graph description."""
    try:
        card = msgspec.json.decode((folder / CARD_FILE).read_bytes(), type=Card)
    except FileNotFoundError:
        raise CardError(f"{CARD_FILE} is missing") from None
    except OSError as err:
        raise CardError(f"{CARD_FILE} cannot be read ({err.strerror})") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise CardError(f"{CARD_FILE} is not a valid card: {err}") from None
    if card.id != folder.name:
        raise CardError(f"{CARD_FILE} says id {card.id!r} but sits in folder {folder.name!r}")
    if (card.precision == "int8") != (card.quantization is not None):
        raise CardError(f"{CARD_FILE}: precision {card.precision!r} but "
                        f"{'no' if card.quantization is None else 'a'} quantization section")
    if card.output.shape != [len(card.classes)]:
        raise CardError(f"{CARD_FILE}: output shape {card.output.shape} does not match "
                        f"{len(card.classes)} classes")
    return card
