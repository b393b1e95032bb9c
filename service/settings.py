"""The service's settings: one frozen dataclass, read from `CNNZOO_*` environment variables.

Every field has a default that serves `models/` on 127.0.0.1:8000; the README's settings
table lists them. A malformed value stops the server at startup with a message naming the
variable, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from modelrepo.providers import CPU, CUDA, provider_names

PREFIX = "CNNZOO_"
SERVERS = ("granian", "uvicorn")
MIN_HEADER_BYTES = 8192  # Granian refuses a smaller HTTP/1 buffer
MAX_TIMEOUT_S = 3600.0


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    model_repository: Path = Path("models")
    # Preference order; ONNX Runtime falls back along it, and the provider really used is
    # read back from each session.
    providers: tuple[str, ...] = (CUDA, CPU)
    max_upload_bytes: int = 10 * 1024 * 1024  # one request body (a batch request: all its images)
    max_image_pixels: int = 40_000_000  # width x height, checked before decoding (bombs)
    max_batch_images: int = 64  # images in one POST /predict/{model}/batch
    batching: bool = True
    batch_window_ms: float = 2.0  # how long the first request of a batch waits for company
    # Most inputs in one ONNX Runtime call. None ("auto"): 32 with an NVIDIA GPU, else per model,
    # 8 to 32 (service/machine.py says why).
    max_batch: int | None = None
    worker_threads: int = 2  # threads that decode images and run ONNX Runtime
    ort_threads: int = 0  # intra-op threads per session; 0 lets ONNX Runtime choose
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001  # the Open Inference Protocol over gRPC, as on Triton; 0: off
    # Server processes; each loads every model and batches on its own. None ("auto"): one per
    # NVIDIA GPU, else one per CPU (service/machine.py).
    workers: int | None = None
    server: str = "granian"  # the ASGI server `python -m service` runs: "granian" or "uvicorn"
    graceful_timeout_s: int = 30  # on SIGTERM, how long in-flight requests get to finish
    keep_alive_s: int = 5
    # HTTP limits against hostile or broken clients (service/http_limits.py wires them into the
    # server; docs/results.md: what each does under attack).
    max_header_bytes: int = 32_768  # the request line and headers together; more: 431 (Granian), 400 (uvicorn)
    header_read_timeout_s: float = 10.0  # to send the headers (slowloris); idle keep-alive too on Granian
    body_read_timeout_s: float = 30.0  # to send the whole body, from the handler's first read; then 408
    max_connections: int = 256  # per worker process: Granian queues more in the backlog, uvicorn answers 503
    # Host names the service answers to (Host and Origin headers); "*": any. None: localhost,
    # 127.0.0.1, ::1 and CNNZOO_HOST unless it binds every address (service/guards.py).
    allowed_hosts: tuple[str, ...] | None = None
    log_level: str = "info"
    access_log: bool = False  # one line per request (docs/results.md: what it costs)
    # A raw image POSTed to /predict/{model} answered before Litestar's router (service/raw_predict.py);
    # off: Litestar's route answers it too (the same answers, more CPU: make bench-service compares).
    hot_path: bool = True
    # The C modules setup.py builds (service/_digitfield.c, service/_tinypng.c); off: numpy and
    # Pillow do their work, with the same answers, at more CPU (make bench-service compares).
    c_modules: bool = True
    # What decoding may cost (docs/results.md, "Hostile uploads"): a one-pass JPEG decodes at up
    # to 1/8 scale per side, so it may declare more pixels than CNNZOO_MAX_IMAGE_PIXELS (48-50 Mpx phone photos);
    # one request's images together decode at most max_request_pixels (more: 413 per image).
    max_jpeg_pixels: int = 64_000_000
    max_request_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_image_pixels", "max_batch_images", "worker_threads", "max_connections"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        if self.batch_window_ms < 0 or self.ort_threads < 0:
            raise SettingsError(f"{PREFIX}BATCH_WINDOW_MS and {PREFIX}ORT_THREADS must not be negative")
        for name in ("port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"{PREFIX}{name.upper()} must be in 0..65535, got {getattr(self, name)}")
        if self.grpc_port and self.grpc_port == self.port:
            raise SettingsError(f"{PREFIX}GRPC_PORT and {PREFIX}PORT are both {self.port}: gRPC needs a port of its own")
        if not self.providers:
            raise SettingsError(f"{PREFIX}PROVIDERS must name at least one provider")
        for name in ("workers", "max_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be auto or at least 1, got {getattr(self, name)}")
        if self.max_header_bytes < MIN_HEADER_BYTES:
            raise SettingsError(f"{PREFIX}MAX_HEADER_BYTES must be at least {MIN_HEADER_BYTES} (Granian's smallest "
                                f"buffer), got {self.max_header_bytes}")
        for name in ("header_read_timeout_s", "body_read_timeout_s"):
            if not 0 < getattr(self, name) <= MAX_TIMEOUT_S:
                raise SettingsError(f"{PREFIX}{name.upper()} must be in (0, {MAX_TIMEOUT_S:g}] seconds, "
                                    f"got {getattr(self, name)}")
        if self.allowed_hosts is not None and not self.allowed_hosts:
            raise SettingsError(f"{PREFIX}ALLOWED_HOSTS must name at least one host (or *)")
        if min(self.max_jpeg_pixels, self.max_request_pixels) < 1:
            raise SettingsError(f"{PREFIX}MAX_JPEG_PIXELS and {PREFIX}MAX_REQUEST_PIXELS must be at least 1")
        if self.server not in SERVERS:
            raise SettingsError(f"{PREFIX}SERVER must be one of {', '.join(SERVERS)}, got {self.server!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `CNNZOO_<FIELD>` variables; unset ones keep their defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            key = PREFIX + field.name.upper()
            raw = environ.get(key)
            if raw is None or raw.strip() == "":
                continue
            if field.name in ("workers", "max_batch"):
                values[field.name] = None if raw.strip().lower() == "auto" else _parse(key, raw.strip(), 1)
            elif field.name == "allowed_hosts":
                values[field.name] = tuple(host.strip() for host in raw.split(",") if host.strip())
            else:
                values[field.name] = _parse(key, raw.strip(), field.default)
        return cls(**values)


def _parse(key: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return _parse_bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, tuple):
            return provider_names(raw)
        return raw
    except ValueError as err:
        raise SettingsError(f"{key}={raw!r}: {err}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "on", "true", "yes"):
        return True
    if lowered in ("0", "off", "false", "no"):
        return False
    raise ValueError("expected on/off (or true/false, 1/0)")
