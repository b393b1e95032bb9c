"""docker-compose.yml's environment means the same to Docker Compose and to podman-compose."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.guards import AllowedHosts, hostname
from service.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


SERVICES = yaml.safe_load(COMPOSE.read_text())["services"]


def environments() -> dict[str, dict[str, str]]:
    return {name: service.get("environment", {}) for name, service in SERVICES.items()}


def resolved(value: str) -> str:
    """`value` as a compose tool resolves it with nothing set in the shell."""
    return DEFAULTED.sub(lambda match: match.group(2), value)


def test_no_variable_defaults_to_empty() -> None:
    """podman-compose 1.0 passes `${X:-}` on literally: the service would read "${X:-}" itself."""
    empty = [f"{service}: {key}" for service, env in environments().items() for key, value in env.items()
             if any(default == "" for _, default in DEFAULTED.findall(str(value)))]
    assert not empty, f"give these a real default: {empty}"


def test_the_published_api_answers_its_default_address() -> None:
    env = {key: resolved(str(value)) for key, value in environments()["api"].items()}
    settings = Settings.from_env({**env, "CNNZOO_HOST": "0.0.0.0"})  # as the image sets it
    published = resolved(SERVICES["api"]["ports"][0]).split(":")[0]  # 127.0.0.1:8000:8000 -> 127.0.0.1
    hosts = AllowedHosts.of(settings)
    assert hosts.allow(hostname(f"{published}:8000")) and hosts.allow("localhost")
    assert not hosts.allow("evil.example")
