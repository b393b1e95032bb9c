"""Settings come from CNNZOO_* variables, with defaults that serve models/ on 127.0.0.1:8000."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, SettingsError


def test_defaults_serve_models_on_loopback() -> None:
    settings = Settings.from_env({})
    assert settings.model_repository == Path("models")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert settings.batching is True
    assert settings.workers is None and settings.server == "granian"  # auto; and the faster server here
    assert settings.access_log is False  # it costs (docs/results.md)
    assert settings.hot_path is True  # raw-body /predict answered before Litestar's router
    assert settings.grpc_port == 8001  # as on Triton
    # HTTP limits (issue 17): a slowloris waits 10 s at most for its headers, an upload 30 s.
    assert (settings.max_header_bytes, settings.header_read_timeout_s) == (32_768, 10.0)
    assert (settings.body_read_timeout_s, settings.max_connections) == (30.0, 256)
    assert settings.allowed_hosts is None  # loopback names and CNNZOO_HOST (service/guards.py)


def test_allowed_hosts_are_a_comma_separated_list() -> None:
    settings = Settings.from_env({"CNNZOO_ALLOWED_HOSTS": "cnnzoo.example, *.svc.cluster.local ,localhost"})
    assert settings.allowed_hosts == ("cnnzoo.example", "*.svc.cluster.local", "localhost")
    assert Settings.from_env({"CNNZOO_ALLOWED_HOSTS": "*"}).allowed_hosts == ("*",)
    assert Settings.from_env({"CNNZOO_ALLOWED_HOSTS": ""}).allowed_hosts is None  # empty means unset


def test_workers_are_auto_or_a_number() -> None:
    assert Settings.from_env({"CNNZOO_WORKERS": "auto"}).workers is None
    assert Settings.from_env({"CNNZOO_WORKERS": "AUTO"}).workers is None
    assert Settings.from_env({"CNNZOO_WORKERS": "3"}).workers == 3
    assert Settings.from_env({}).max_batch is None  # auto: machine.plan chooses
    assert Settings.from_env({"CNNZOO_MAX_BATCH": "auto"}).max_batch is None
    assert Settings.from_env({"CNNZOO_MAX_BATCH": "16"}).max_batch == 16
    assert Settings.from_env({"CNNZOO_SERVER": "uvicorn"}).server == "uvicorn"


def test_grpc_can_be_switched_off_or_moved_but_never_onto_the_http_port() -> None:
    assert Settings.from_env({"CNNZOO_GRPC_PORT": "0"}).grpc_port == 0
    assert Settings.from_env({"CNNZOO_GRPC_PORT": "9001", "CNNZOO_PORT": "9000"}).grpc_port == 9001
    with pytest.raises(SettingsError, match="CNNZOO_GRPC_PORT and CNNZOO_PORT are both 9000"):
        Settings.from_env({"CNNZOO_GRPC_PORT": "9000", "CNNZOO_PORT": "9000"})


def test_every_kind_of_value_is_read_from_the_environment() -> None:
    settings = Settings.from_env({
        "CNNZOO_MODEL_REPOSITORY": "/srv/models", "CNNZOO_PROVIDERS": "cpu",
        "CNNZOO_MAX_UPLOAD_BYTES": "2048", "CNNZOO_BATCH_WINDOW_MS": "0.5", "CNNZOO_BATCHING": "off",
        "CNNZOO_PORT": "9000", "CNNZOO_HOST": "::1", "CNNZOO_WORKER_THREADS": " 4 ", "CNNZOO_MAX_BATCH": "",
    })
    assert settings.model_repository == Path("/srv/models")
    assert settings.providers == ("CPUExecutionProvider",)
    assert settings.max_upload_bytes == 2048 and settings.batch_window_ms == 0.5
    assert settings.batching is False and settings.port == 9000 and settings.host == "::1"
    assert settings.worker_threads == 4
    assert settings.max_batch == Settings().max_batch  # empty means unset


def test_provider_names_may_be_short_or_onnx_runtimes_own() -> None:
    settings = Settings.from_env({"CNNZOO_PROVIDERS": "TensorRT, CUDAExecutionProvider ,cpu"})
    assert settings.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("CNNZOO_MAX_BATCH", "lots", "CNNZOO_MAX_BATCH='lots'"),
    ("CNNZOO_BATCHING", "maybe", "on/off"),
    ("CNNZOO_MAX_BATCH", "0", "at least 1"),
    ("CNNZOO_PORT", "70000", "0..65535"),
    ("CNNZOO_GRPC_PORT", "-1", "CNNZOO_GRPC_PORT must be in 0..65535"),
    ("CNNZOO_BATCH_WINDOW_MS", "-1", "must not be negative"),
    ("CNNZOO_PROVIDERS", " , ", "at least one provider"),
    ("CNNZOO_WORKERS", "0", "auto or at least 1"),
    ("CNNZOO_WORKERS", "many", "CNNZOO_WORKERS='many'"),
    ("CNNZOO_SERVER", "gunicorn", "granian, uvicorn"),
    ("CNNZOO_MAX_HEADER_BYTES", "4096", "at least 8192"),
    ("CNNZOO_HEADER_READ_TIMEOUT_S", "0", "CNNZOO_HEADER_READ_TIMEOUT_S must be in (0, 3600] seconds"),
    ("CNNZOO_BODY_READ_TIMEOUT_S", "-5", "CNNZOO_BODY_READ_TIMEOUT_S must be in"),
    ("CNNZOO_MAX_CONNECTIONS", "0", "CNNZOO_MAX_CONNECTIONS must be at least 1"),
    ("CNNZOO_ALLOWED_HOSTS", " , ", "at least one host"),
])
def test_a_bad_value_names_its_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Settings.from_env({key: value})


def test_the_readme_documents_every_setting() -> None:
    import re
    from dataclasses import fields

    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    documented = set(re.findall(r"`CNNZOO_([A-Z_]+)`", readme))
    assert documented == {field.name.upper() for field in fields(Settings)}
