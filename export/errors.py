"""The typed errors of export: each says what went wrong and, where there is one, carries the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelrepo.card import ParityReport


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
