"""deploy/: every manifest valid offline, and in agreement with the service and its image.

Core kinds go through kubernetes-validate's strict schemas (an unknown field is an error),
KServe's through the kserve SDK's model classes (kserve_reader). Ports, probe paths, the user
and the model repository come from the code (Settings, the app's route table, the Dockerfile),
never typed again here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kserve_reader import InvalidResource, kserve, read_resource
from manifests import (Document, Pod, container_env, deployment_pod, documents, http_port, kserve_pod, probe_port,
                       service_links, serving_image, settings_in)

from service import routes
from service.app import create_app
from service.guards import ANY_HOST, AllowedHosts
from service.settings import Settings

# The oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.25", kubernetes_validate.latest_version())
# The runtime container KServe merges an InferenceService's model spec into (its SDK has no constant).
KSERVE_CONTAINER = "kserve-container"

DOCUMENTS = documents()
IMAGE = serving_image()
KSERVE_DOCUMENTS = [d for d in DOCUMENTS if d.body["apiVersion"].startswith(kserve.constants.KSERVE_GROUP + "/")]
CORE_DOCUMENTS = [d for d in DOCUMENTS if d not in KSERVE_DOCUMENTS]


def the(kind: str, folder: str = "") -> dict[str, Any]:
    (body,) = [d.body for d in DOCUMENTS if d.body["kind"] == kind and d.file.startswith(folder)]
    return body


def route_path(handler: Any) -> str:
    (path,) = handler.paths
    return path


PODS = {
    "cpu": deployment_pod(the("Deployment", "kubernetes/cpu/")),
    "gpu": deployment_pod(the("Deployment", "kubernetes/gpu/")),
    "kserve": kserve_pod(the("ClusterServingRuntime"), the("InferenceService")),
}


@pytest.fixture(params=sorted(PODS))
def pod(request: pytest.FixtureRequest) -> Pod:
    return PODS[request.param]


@pytest.fixture(scope="module")
def get_paths() -> set[str]:
    """The GET paths of the app's route table."""
    return {route.path for route in create_app(Settings()).routes if "GET" in route.methods}


def schema_problem(body: dict[str, Any], version: str) -> str | None:
    """kubernetes-validate's strict verdict, in one line (its own message prints the whole schema)."""
    try:
        kubernetes_validate.validate(body, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return f"{'.'.join(map(str, err.path))}: {err.message}"
    return None


def test_deploy_holds_every_manifest_of_the_readme() -> None:
    assert sorted(d.label for d in DOCUMENTS) == [
        "kserve/cluster-serving-runtime.yaml:ClusterServingRuntime",
        "kserve/inference-service.yaml:InferenceService",
        "kubernetes/cpu/deployment.yaml:Deployment",
        "kubernetes/gpu/deployment.yaml:Deployment",
        "kubernetes/hpa.yaml:HorizontalPodAutoscaler",
        "kubernetes/pdb.yaml:PodDisruptionBudget",
        "kubernetes/service.yaml:Service",
    ]


# ---- valid, offline ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("document", CORE_DOCUMENTS, ids=lambda d: d.label)
def test_core_kinds_follow_the_kubernetes_schema(document: Document, version: str) -> None:
    assert schema_problem(document.body, version) is None


@pytest.mark.parametrize("document", KSERVE_DOCUMENTS, ids=lambda d: d.label)
def test_kserve_kinds_follow_the_kserve_sdk(document: Document) -> None:
    read_resource(document.body)


def test_the_kubernetes_schema_refuses_a_misspelled_field() -> None:
    deployment = copy.deepcopy(the("Deployment", "kubernetes/cpu/"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")
    assert "'readynessProbe' was unexpected" in schema_problem(deployment, KUBERNETES_VERSIONS[-1])


def _misspelled_runtime_field(runtime: dict) -> None:
    runtime["spec"]["protocolVersion"] = runtime["spec"].pop("protocolVersions")


def _misspelled_container_field(runtime: dict) -> None:
    container = runtime["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")


def _no_containers(runtime: dict) -> None:
    del runtime["spec"]["containers"]


def _port_as_text(runtime: dict) -> None:
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"


@pytest.mark.parametrize("spoil", [_misspelled_runtime_field, _misspelled_container_field, _no_containers,
                                   _port_as_text], ids=lambda f: f.__name__.strip("_"))
def test_the_kserve_reader_refuses_what_kserve_would(spoil) -> None:
    runtime = copy.deepcopy(the("ClusterServingRuntime"))
    spoil(runtime)
    with pytest.raises(InvalidResource):
        read_resource(runtime)


# ---- every serving pod: plain Deployments and the KServe runtime -----------------------------

def test_the_server_listens_on_the_declared_http_port(pod: Pod) -> None:
    settings = settings_in(pod.container, IMAGE)
    assert settings.port == http_port(pod.container)
    assert settings.host == "0.0.0.0", "probes and Services reach the pod's address, not its loopback"


def test_probes_ask_the_health_routes_on_the_http_port(pod: Pod, get_paths: set[str]) -> None:
    port = settings_in(pod.container, IMAGE).port
    for probe, handler in (("readinessProbe", routes.ready), ("livenessProbe", routes.live)):
        assert pod.container[probe]["httpGet"]["path"] == route_path(handler) in get_paths
        assert probe_port(pod.container, pod.container[probe]) == port


def test_probes_and_scrapes_pass_the_host_guard(pod: Pod) -> None:
    """The kubelet probes, and Prometheus scrapes, with the pod's IP as Host."""
    assert AllowedHosts.of(settings_in(pod.container, IMAGE)).allow("10.244.3.17")
    # The probes would pass even with a narrower CNNZOO_ALLOWED_HOSTS.
    assert routes.ready.opt.get(ANY_HOST) and routes.live.opt.get(ANY_HOST)


def test_metrics_are_scraped_from_the_metrics_route(pod: Pod, get_paths: set[str]) -> None:
    assert pod.scrape_annotations == {"port": str(settings_in(pod.container, IMAGE).port),
                                      "path": route_path(routes.metrics)}
    assert route_path(routes.metrics) in get_paths


def test_termination_outlasts_the_prestop_sleep_and_the_drain(pod: Pod) -> None:
    command = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain_s = settings_in(pod.container, IMAGE).graceful_timeout_s
    assert pod.grace_period_s > int(command[1]) + drain_s


def test_no_service_link_changes_the_settings(pod: Pod) -> None:
    """A Service named cnnzoo makes the kubelet add CNNZOO_PORT=tcp://<ip>:8000 to every pod of
    its namespace; the container's own CNNZOO_PORT must win."""
    for service in (d.body for d in DOCUMENTS if d.body["kind"] == "Service"):
        links = service_links(service)
        assert settings_in(pod.container, IMAGE, links) == settings_in(pod.container, IMAGE)


def test_runs_as_the_image_user_on_a_read_only_root(pod: Pod) -> None:
    assert pod.security["runAsNonRoot"] is True
    assert (pod.security["runAsUser"], pod.security["runAsGroup"]) == (IMAGE.uid, IMAGE.gid)
    assert pod.security["readOnlyRootFilesystem"] is True
    assert pod.security["allowPrivilegeEscalation"] is False
    assert pod.security["capabilities"]["drop"] == ["ALL"]


def test_where_the_service_writes_is_an_empty_dir(pod: Pod) -> None:
    """Under a read-only root (strace, then a read-only mount namespace, showed it): multipart
    uploads over 1 MiB spill to the temporary directory and fail without it (500); ONNX Runtime
    keeps a small database under ~/.cache and warns at every start without it."""
    env = {**IMAGE.env, **container_env(pod.container)}
    assert "HOME" in env, "without HOME the runtime derives it from /etc/passwd, which may not match the mount"
    temporary = next((env[name] for name in ("TMPDIR", "TEMP", "TMP") if name in env), "/tmp")  # tempfile's order
    empty_dirs = {v["name"] for v in pod.volumes if "emptyDir" in v}
    mounted = {m["mountPath"] for m in pod.container["volumeMounts"] if m["name"] in empty_dirs}
    assert {temporary, env["HOME"]} <= mounted


def test_threads_fit_the_cpu_limit(pod: Pod) -> None:
    settings = settings_in(pod.container, IMAGE)
    cpu_limit = pod.container["resources"]["limits"]["cpu"]
    cpus = int(cpu_limit[:-1]) / 1000 if cpu_limit.endswith("m") else float(cpu_limit)
    assert settings.workers == 1, "one process per pod: scale with replicas, metrics are per process"
    assert settings.ort_threads >= 1, "0 lets ONNX Runtime size its pool from the node's cores"
    assert settings.worker_threads * settings.ort_threads <= cpus


# ---- Kubernetes: Deployment, Service, HPA, PDB ---------------------------------------------------

@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_the_deployment_serves_the_baked_in_repository(variant: str) -> None:
    assert settings_in(PODS[variant].container, IMAGE).model_repository == Path(IMAGE.baked_repository)


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_the_deployment_turns_service_links_off(variant: str) -> None:
    assert the("Deployment", f"kubernetes/{variant}/")["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_the_gpu_variant_differs_only_in_image_resources_and_tolerations() -> None:
    cpu, gpu = (copy.deepcopy(the("Deployment", f"kubernetes/{v}/")) for v in ("cpu", "gpu"))
    (cpu_container,), (gpu_container,) = (d["spec"]["template"]["spec"]["containers"] for d in (cpu, gpu))
    assert (cpu_container.pop("image"), gpu_container.pop("image")) == ("cnnzoo:cpu", "cnnzoo:gpu")
    assert "nvidia.com/gpu" not in cpu_container.pop("resources")["limits"]
    assert gpu_container.pop("resources")["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" in {t["key"] for t in gpu["spec"]["template"]["spec"].pop("tolerations")}
    assert cpu == gpu


def test_the_service_exposes_http_and_grpc_of_the_pods() -> None:
    service = the("Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}
    for variant in ("cpu", "gpu"):
        pod = PODS[variant]
        template = the("Deployment", f"kubernetes/{variant}/")["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        container_ports = {p["name"]: p["containerPort"] for p in pod.container["ports"]}
        settings = settings_in(pod.container, IMAGE)  # CNNZOO_GRPC_PORT's default unless the pod sets it
        assert container_ports == {"http": settings.port, "grpc": settings.grpc_port}
        for name, port in ports.items():  # the same numbers inside and outside the cluster
            assert port["targetPort"] == name and port["port"] == container_ports[name]


def test_the_autoscaler_and_the_disruption_budget_cover_the_deployment() -> None:
    deployment, autoscaler, budget = the("Deployment", "kubernetes/cpu/"), the("HorizontalPodAutoscaler"), \
        the("PodDisruptionBudget")
    assert "replicas" not in deployment["spec"], "the HPA owns the count; kubectl apply would reset it"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": deployment["apiVersion"],
                                                    "kind": "Deployment", "name": deployment["metadata"]["name"]}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert autoscaler["spec"]["minReplicas"] - budget["spec"]["maxUnavailable"] >= 1, \
        "a drain must leave one pod serving"


# ---- KServe: ClusterServingRuntime and InferenceService ----------------------------------------

def test_the_runtime_serves_the_folder_where_kserve_puts_the_storage_uri() -> None:
    settings = settings_in(PODS["kserve"].container, IMAGE)
    assert settings.model_repository == Path(kserve.model_repository.MODEL_MOUNT_DIRS)


def test_the_inference_service_asks_the_runtime_for_v2() -> None:
    runtime, inference_service = the("ClusterServingRuntime"), the("InferenceService")
    model = inference_service["spec"]["predictor"]["model"]
    assert runtime["spec"]["protocolVersions"] == [kserve.constants.PredictorProtocol.REST_V2.value]
    assert runtime["spec"]["containers"][0]["name"] == KSERVE_CONTAINER
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["storageUri"]
