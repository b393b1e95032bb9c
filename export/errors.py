"""The typed errors of export: each says what went wrong and, where there is one, carries the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelrepo.card import Int8Gate, ParityReport


class ExportError(Exception):
    """Base class: nothing was published."""


class RunNotReady(ExportError):
    """The run folder is missing, unfinished, or its metrics lack what export needs."""


class ProviderUnavailable(ExportError):
    """An ONNX Runtime provider was asked for but the session did not really run on it."""


class ParityGateFailed(ExportError):
    """ONNX Runtime and PyTorch disagree beyond the gate's tolerance; `report` says by how much."""

    def __init__(self, report: ParityReport):
        self.report = report
        super().__init__(f"{report.model_id}: the parity gate failed\n{report.summary()}")


class NotQuantizable(ExportError):
    """The fp32 model to quantize is missing, damaged or not fp32, or too few training images to quantize it with."""


class Int8GateFailed(ExportError):
    """The int8 model strays too far from its fp32 model; `report` (an Int8Gate) says how far."""

    def __init__(self, report: Int8Gate):
        self.report = report
        super().__init__(f"{report.model_id}: the int8 gate failed\n{report.summary()}")
