"""What the manifest tests read: deploy/'s YAML documents and the serving pods they describe,
the serving image's facts from its Dockerfile, and the settings a container really gets from
its environment.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


class Document(NamedTuple):
    file: str  # relative to deploy/
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.file}:{self.body['kind']}"


def documents() -> list[Document]:
    """Every YAML document under deploy/, in file order."""
    return [Document(path.relative_to(DEPLOY_DIR).as_posix(), body)
            for path in sorted(DEPLOY_DIR.rglob("*.yaml"))
            for body in yaml.safe_load_all(path.read_text()) if body]


@dataclass(frozen=True)
class ServingImage:
    env: dict[str, str]  # its ENV lines
    uid: int  # its USER
    gid: int
    baked_repository: str  # where it copies models/


def serving_image(dockerfile: Path = REPO_ROOT / "Dockerfile") -> ServingImage:
    """The facts of the Dockerfile's final stage (the image that runs)."""
    env: dict[str, str] = {}
    user = baked = None
    for instruction, arguments in _final_stage(dockerfile.read_text()):
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
        elif instruction == "USER":
            user = arguments
        elif instruction == "COPY" and arguments.split()[0] == "models":
            baked = arguments.split()[1]
    assert user and baked, f"{dockerfile} names no USER or does not copy models/"
    uid, _, gid = user.partition(":")
    return ServingImage(env=env, uid=int(uid), gid=int(gid or uid), baked_repository=baked)


def _final_stage(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) after the last FROM, continuation lines joined."""
    instructions, pending = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        instruction, _, arguments = pending.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
        pending = ""
    last_from = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM")
    return instructions[last_from + 1:]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", [])}


def service_links(service: dict[str, Any], cluster_ip: str = "10.96.0.10") -> dict[str, str]:
    """The variables the kubelet puts into every pod of the Service's namespace (unless the
    pod sets enableServiceLinks: false), Docker-links style."""
    prefix = re.sub(r"[^A-Z0-9]", "_", service["metadata"]["name"].upper())
    ports = service["spec"]["ports"]
    links = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"]),
             f"{prefix}_PORT": f"tcp://{cluster_ip}:{ports[0]['port']}"}
    for port in ports:
        name = f"{prefix}_PORT_{port['port']}_TCP"
        links[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        links.update({name: f"tcp://{cluster_ip}:{port['port']}", f"{name}_PROTO": "tcp",
                      f"{name}_PORT": str(port["port"]), f"{name}_ADDR": cluster_ip})
    return links


def settings_in(container: dict[str, Any], image: ServingImage,
                links: dict[str, str] | None = None) -> Settings:
    """The service's settings in that container: the image's ENV, under any service links,
    under the container's own env (the kubelet's order of precedence)."""
    return Settings.from_env({**image.env, **(links or {}), **container_env(container)})


@dataclass(frozen=True)
class Pod:
    """A serving pod as the manifests describe it: the server's container and the pod around it."""

    container: dict[str, Any]
    volumes: list[dict[str, Any]]
    security: dict[str, Any]  # the pod's securityContext under the container's own
    grace_period_s: int
    scrape_annotations: dict[str, str]  # Prometheus port and path


def deployment_pod(deployment: dict[str, Any]) -> Pod:
    template = deployment["spec"]["template"]
    spec = template["spec"]
    (container,) = spec["containers"]
    annotations = template["metadata"]["annotations"]
    return Pod(container, spec["volumes"], {**spec["securityContext"], **container["securityContext"]},
               spec["terminationGracePeriodSeconds"],
               {"port": annotations["prometheus.io/port"], "path": annotations["prometheus.io/path"]})


def kserve_pod(runtime: dict[str, Any], inference_service: dict[str, Any]) -> Pod:
    (container,) = runtime["spec"]["containers"]
    annotations = runtime["spec"]["annotations"]
    return Pod(container, runtime["spec"]["volumes"], container["securityContext"],
               inference_service["spec"]["predictor"]["terminationGracePeriodSeconds"],
               {"port": annotations["prometheus.kserve.io/port"], "path": annotations["prometheus.kserve.io/path"]})


def http_port(container: dict[str, Any]) -> int:
    """The port named http, or the only port of a KServe runtime (which Knative wants unnamed)."""
    ports = container["ports"]
    named = [p for p in ports if p.get("name") == "http"]
    return (named or ports)[0]["containerPort"]


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number
