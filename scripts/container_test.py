"""End to end: the serving image and docker-compose.yml, built and run for real with podman.

    make container-test                                       both variants, then podman-compose
    .venv/bin/python scripts/container_test.py --runtime cpu --no-compose
    make container-test CONTAINER_TEST_ARGS=--train           ... and the training image

For each image variant (gpu: onnxruntime-gpu with CUDA/cuDNN wheels; cpu: plain onnxruntime)
it builds the image and checks what is installed in it; starts a container published on
127.0.0.1 only; waits for /health/ready; posts real MNIST and CIFAR-10 test images as PNG and
checks the labels against the truth and against the same ONNX files run in this process;
checks the server's user and the image's HEALTHCHECK; then stops the container (SIGTERM) while
a request is in flight and checks that the request is answered and the server exits cleanly.
Then the same through `podman-compose up` of docker-compose.yml, serving a mounted repository
with two worker processes.
With --train, also the compose `train` service: a 1-epoch run on the fixture data and its export,
as a non-root host user, then that model served. Prints every check; exits 1 at the first failure.

Needs podman, runc, podman-compose and the base image: run ../shared/tools/container-sandbox.sh.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from container_checks import (REPO, CheckFailed, check, free_port, get_json, logs, podman,
                              prediction_checks, stop_with_request_in_flight, wait_ready)

from service.app import SHUTDOWN_MESSAGE

MODELS = ("cnn-mnist", "lenet5-cifar10")  # by default one per dataset
PROBE = r"""
import importlib.metadata as md, importlib.util as iu, json, os, onnxruntime as ort
print(json.dumps({"dists": sorted({d.metadata["Name"].lower() for d in md.distributions()}),
                  "modules": {m: iu.find_spec(m) is not None for m in ("torch", "training", "export", "service",
                                                                   "service._digitfield", "service._tinypng")},
                  "providers": ort.get_available_providers(), "uid": os.getuid()}))
"""
# The gpu image's CUDA libraries: what ONNX Runtime's preload finds in the pip wheels, and what
# its CUDA provider still lacks (only the driver's libcuda, which the NVIDIA toolkit mounts).
CUDA_PROBE = r"""
import json, os, subprocess, onnxruntime as ort
ort.preload_dlls()
loaded = sorted({p.rsplit("/", 1)[-1] for p in open("/proc/self/maps").read().split() if "/nvidia/" in p})
packages = os.path.dirname(os.path.dirname(ort.__file__))
env = {**os.environ, "LD_LIBRARY_PATH": f"{packages}/nvidia/cu13/lib:{packages}/nvidia/cudnn/lib"}
ldd = subprocess.run(["ldd", os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime_providers_cuda.so")],
                     capture_output=True, text=True, env=env).stdout
print(json.dumps({"loaded": loaded, "missing": [line.split()[0] for line in ldd.splitlines() if "not found" in line]}))
"""
CUDA_LIBRARIES = {"libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10", "libcufft.so.12",
                  "libcudnn.so.9"}


def build(runtime: str) -> str:
    tag = f"cnnzoo:{runtime}"
    started = time.monotonic()
    podman("build", "--format", "docker", "--isolation", "chroot", "--network", "host",
           "--build-arg", f"RUNTIME={runtime}", "-t", tag, ".", timeout=3600)
    check(f"{tag} built", True, f"{time.monotonic() - started:.0f} s")
    return tag


def image_checks(tag: str, runtime: str) -> int:
    """What the image declares and what is installed in it; returns its size in bytes."""
    config = json.loads(podman("image", "inspect", tag).stdout)[0]
    health = (config.get("Config") or {}).get("Healthcheck") or config.get("Healthcheck") or {}
    check(f"{tag}: HEALTHCHECK on /health/ready", "/opt/cnnzoo/healthcheck.py" in " ".join(health.get("Test", [])),
          " ".join(health.get("Test", [])))
    user = config["Config"].get("User", "")
    check(f"{tag}: runs as a non-root user", user.split(":")[0] not in ("", "0", "root"), f"USER {user}")
    probe = json.loads(podman("run", "--rm", "--network", "none", tag, "python", "-c", PROBE).stdout)
    dists, modules = set(probe["dists"]), probe["modules"]
    nvidia = sorted(d for d in dists if d.startswith("nvidia-"))
    if runtime == "gpu":
        check(f"{tag}: onnxruntime-gpu with CUDA and cuDNN wheels, no plain onnxruntime",
              "onnxruntime-gpu" in dists and "onnxruntime" not in dists
              and {"nvidia-cudnn-cu13", "nvidia-cuda-runtime", "nvidia-cublas"} <= dists, ", ".join(nvidia))
        check(f"{tag}: ONNX Runtime offers the CUDA provider", "CUDAExecutionProvider" in probe["providers"],
              ", ".join(probe["providers"]))
        cuda = json.loads(podman("run", "--rm", "--network", "none", tag, "python", "-c", CUDA_PROBE)
                          .stdout.strip().splitlines()[-1])
        check(f"{tag}: CUDA and cuDNN load from the wheels; the CUDA provider lacks only the driver's libcuda",
              CUDA_LIBRARIES <= set(cuda["loaded"]) and cuda["missing"] == ["libcuda.so.1"],
              f"preloaded {', '.join(cuda['loaded'])}; not found: {', '.join(cuda['missing'])}")
    else:
        check(f"{tag}: plain onnxruntime only: no onnxruntime-gpu, no CUDA libraries",
              "onnxruntime" in dists and "onnxruntime-gpu" not in dists and not nvidia,
              ", ".join(probe["providers"]))
    check(f"{tag}: serving code only: no torch, no training or export code",
          modules["service"] and not (modules["torch"] or modules["training"] or modules["export"]),
          json.dumps(modules))
    check(f"{tag}: the C modules (service/_digitfield.c, _tinypng.c) are built in",
          modules["service._digitfield"] and modules["service._tinypng"])
    check(f"{tag}: a command in it runs as uid {probe['uid']}", probe["uid"] != 0)
    size = int(config["Size"])
    check(f"{tag}: image size", True, f"{size / 1e9:.2f} GB ({size:,} bytes)")
    return size


def serving_checks(container: str, url: str, expect_provider: str, models: list[str]) -> None:
    """A running container: ready, right answers, not root, healthy, clean stop with a request in flight."""
    waited = wait_ready(url, container)
    check(f"{container}: /health/ready", True, f"200 after {waited:.0f} s")
    served = {m["id"]: m for m in get_json(f"{url}/models")["models"]}
    for model in models:
        check(f"{container}: {model} serves", served.get(model, {}).get("status") == "ready",
              json.dumps({k: served.get(model, {}).get(k) for k in ("status", "provider")}))
        prediction_checks(url, model, expect_provider, f"{container}: {model}")
    with urllib.request.urlopen(f"{url}/", timeout=30) as page:
        kind, size = page.headers.get("content-type", ""), len(page.read())
    check(f"{container}: the web page is served", page.status == 200 and kind.startswith("text/html"),
          f"GET / -> {page.status} {kind}, {size} bytes")
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    cmdline = podman("exec", container, "cat", "/proc/1/cmdline").stdout.replace("\0", " ").strip()
    check(f"{container}: the server process (pid 1) is not root", "0" not in uids and "service" in cmdline,
          f"{cmdline!r} runs as uid {uids[0]} (real, effective, saved, fs: {' '.join(uids)})")
    health = podman("healthcheck", "run", container, check=False)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
    check(f"{container}: the image's healthcheck passes", health.returncode == 0 and status == "healthy",
          f"podman healthcheck run: exit {health.returncode} {health.stdout.strip()}; status {status}")


def clean_stop_checks(container: str, url: str, stop: list[str], model: str) -> None:
    answer, seconds = stop_with_request_in_flight(url, model, container, stop)
    check(f"{container}: a request in flight during SIGTERM is answered", answer["status"] == 200,
          f"{answer['status']} {answer.get('label')!r}; stop took {seconds:.1f} s")
    state = json.loads(podman("inspect", container).stdout)[0]["State"]
    log = logs(container)
    check(f"{container}: shut down cleanly, after waiting for the request",
          state["ExitCode"] == 0 and SHUTDOWN_MESSAGE in log,
          f"exit code {state['ExitCode']}; log: " + " | ".join(
              line.split(":", 1)[-1].strip() for line in log.splitlines()
              if any(key in line for key in ("Shutting down", "shutdown", "service stopped"))))


def container_run(tag: str, runtime: str, models: list[str], gpu: bool) -> None:
    name, port = f"cnnzoo-ct-{runtime}-{os.getpid()}", free_port()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", *gpu_devices(runtime, gpu), tag)
    try:
        check(f"{name}: started", True, f"{tag}, published on 127.0.0.1:{port} only")
        url = f"http://127.0.0.1:{port}"
        serving_checks(name, url, expected_provider(runtime, gpu), models)
        clean_stop_checks(name, url, ["podman", "stop", name], models[0])
    finally:
        podman("rm", "-f", name, check=False)


def worker_processes(name: str) -> int:
    """The server's worker processes in the container: children of the first `python -m service`,
    forked by Granian (the same command line) or spawned by uvicorn (`--multiprocessing-fork`)."""
    rows = [line.split(None, 2) for line in podman("top", name, "pid", "ppid", "args").stdout.splitlines()[1:]]
    server = min(int(pid) for pid, _, args in rows if "-m service" in args)
    return sum(1 for _, ppid, args in rows
               if int(ppid) == server and ("-m service" in args or "multiprocessing-fork" in args))


def compose_run(workdir: Path, models: list[str], gpu: bool) -> None:
    """`podman-compose up` of docker-compose.yml as it is, serving a mounted copy of `models`."""
    repository = workdir / "models"
    for model in models:
        shutil.copytree(REPO / "models" / model, repository / model)
    project, port = f"cnnzoo-ct{os.getpid()}", free_port()
    env = {**os.environ, "CNNZOO_PUBLISH": f"127.0.0.1:{port}", "CNNZOO_PUBLISH_GRPC": f"127.0.0.1:{free_port()}",
           "CNNZOO_MODELS": str(repository),
           "CNNZOO_WORKERS": "2", "BUILDAH_ISOLATION": "chroot"}
    compose = ["podman-compose", "-p", project]
    version = subprocess.run(["podman-compose", "version"], capture_output=True, text=True).stdout
    version = " ".join(next((line for line in version.splitlines() if "compose" in line.lower()), "").split())
    try:
        run = subprocess.run([*compose, "up", "-d", "api"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
        if run.returncode != 0:
            raise CheckFailed(f"podman-compose up failed:\n{run.stdout}\n{run.stderr}")
        name = podman("ps", "--filter", f"label=com.docker.compose.project={project}",
                      "--filter", "label=com.docker.compose.service=api", "--format", "{{.Names}}").stdout.strip()
        if not name:
            raise CheckFailed(f"podman-compose up started no api container:\n{run.stdout}\n{run.stderr}")
        devices = json.loads(podman("inspect", name).stdout)[0]["HostConfig"].get("Devices") or []
        check(f"podman-compose up api ({version})", True,
              f"{name}, published on 127.0.0.1:{port}; GPU devices given: {devices or 'none'}")
        url = f"http://127.0.0.1:{port}"
        # podman-compose 1.0 drops the GPU reservation; newer ones pass it on as CDI devices
        serving_checks(name, url, expected_provider("gpu", gpu and bool(devices)), models)
        served = sorted(m["id"] for m in get_json(f"{url}/models")["models"])
        baked = sorted(p.name for p in (REPO / "models").iterdir() if (p / "card.json").exists())
        check(f"{name}: serves the mounted repository, not the baked-in one", served == sorted(models),
              f"serves {served}; baked into the image: {baked}")
        write = podman("exec", name, "touch", "/opt/cnnzoo/models/x", check=False)
        check(f"{name}: the repository is mounted read-only", write.returncode != 0, write.stderr.strip())
        state = json.loads(podman("inspect", name).stdout)[0]
        env_in = dict(item.split("=", 1) for item in state["Config"]["Env"])
        workers = worker_processes(name)
        check(f"{name}: restart policy and server settings from the compose file and the shell",
              state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
              and env_in.get("CNNZOO_GRACEFUL_TIMEOUT_S") == "25" and workers == 2,
              f"restart {state['HostConfig']['RestartPolicy']['Name']}; {workers} worker processes; "
              + ", ".join(f"{k}={env_in[k]}" for k in sorted(env_in) if k.startswith("CNNZOO_")))
        clean_stop_checks(name, url, [*compose, "stop", "api"], models[-1])
    finally:
        subprocess.run([*compose, "down"], cwd=REPO, env=env, capture_output=True, timeout=300)
        podman("network", "rm", f"{project}_default", check=False)  # podman-compose 1.0 leaves it


def train_run(workdir: Path, serving_tag: str, gpu: bool) -> int:
    """The compose `train` service, as a non-root host user: one short real training run on the
    fixture data and its export, then the exported model served and asked."""
    started = time.monotonic()
    podman("build", "--format", "docker", "--isolation", "chroot", "--network", "host",
           "-f", "Dockerfile.train", "-t", "cnnzoo-train:gpu", ".", timeout=3600)
    size = int(json.loads(podman("image", "inspect", "cnnzoo-train:gpu").stdout)[0]["Size"])
    check("cnnzoo-train:gpu built", True, f"{time.monotonic() - started:.0f} s, {size / 1e9:.2f} GB ({size:,} bytes)")
    uid = 1000 if os.geteuid() == 0 else os.getuid()  # as root, stand in for a host user
    runs, repository = workdir / "runs", workdir / "trained-models"
    for folder in (runs, repository):
        folder.mkdir()
        os.chown(folder, uid, uid)
    env = {**os.environ, "CNNZOO_UID": str(uid), "CNNZOO_GID": str(uid), "CNNZOO_RUNS": str(runs),
           "CNNZOO_MODELS": str(repository), "DATA_DIR": str(REPO / "tests" / "fixtures")}
    project = f"cnnzoo-ct{os.getpid()}-train"
    command = "make train MODEL=cnn DATASET=mnist EPOCHS=1 && make export MODEL=cnn-mnist"
    try:  # --no-deps: podman-compose 1.0's `run` otherwise starts every service of the file first
        done = subprocess.run(["podman-compose", "-p", project, "run", "--no-deps", "--rm", "train", "sh", "-c",
                               command], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        podman("network", "rm", f"{project}_default", check=False)
    said = [line.strip() for line in done.stdout.splitlines() if "test accuracy in" in line or "published" in line]
    check(f"compose train as uid {uid}: {command}", done.returncode == 0 and len(said) == 2,
          " | ".join(said) or (done.stdout + done.stderr)[-2000:])
    owners = {path.stat().st_uid for folder in (runs, repository) for path in folder.rglob("*")}
    check("what training wrote belongs to the host user", owners == {uid}, f"owners: {sorted(owners)}")
    name, port = f"cnnzoo-ct-trained-{os.getpid()}", free_port()
    runtime = serving_tag.split(":")[1]
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", *gpu_devices(runtime, gpu),
           "-v", f"{repository}:/opt/cnnzoo/models:ro", serving_tag)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, name)
        prediction_checks(url, "cnn-mnist", expected_provider(runtime, gpu),
                          f"{name} ({serving_tag}): the model trained just now", repository)
    finally:
        podman("rm", "-f", name, check=False)
    return size


def expected_provider(runtime: str, gpu: bool) -> str:
    """What ONNX Runtime should really run on: CUDA only for the gpu image given the GPUs."""
    return "CUDAExecutionProvider" if runtime == "gpu" and gpu else "CPUExecutionProvider"


def gpu_devices(runtime: str, gpu: bool) -> list[str]:
    """podman's way to hand a container the host's NVIDIA GPUs (a CDI spec: nvidia-ctk cdi generate)."""
    return ["--device", "nvidia.com/gpu=all"] if runtime == "gpu" and gpu else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("gpu", "cpu"), action="append",
                        help="image variant(s) to build and run (default: both)")
    parser.add_argument("--no-compose", action="store_true", help="leave out the podman-compose stage")
    parser.add_argument("--gpu", action="store_true",
                        help="give the gpu image the host's GPUs and expect CUDAExecutionProvider (needs podman CDI)")
    parser.add_argument("--train", action="store_true",
                        help="also build the training image (6.7 GB) and run the compose train service briefly")
    parser.add_argument("--models", default=",".join(MODELS), help="models to post test images to (default: %(default)s)")
    args = parser.parse_args()
    models = args.models.split(",")
    missing = [tool for tool in ("podman", "podman-compose") if not shutil.which(tool)]
    missing += [f"models/{m}" for m in models if not (REPO / "models" / m / "card.json").exists()]
    if missing:
        print(f"container-test needs {', '.join(missing)} (podman: ../shared/tools/container-sandbox.sh; "
              "models: make export-all)", file=sys.stderr)
        return 2
    podman_version = podman("--version").stdout.strip()
    print(f"# container-test {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {platform.node()}: "
          f"{os.cpu_count()} CPUs, {'GPUs given' if args.gpu else 'no GPU given'} to the containers, {podman_version}")
    sizes: dict[str, int] = {}
    try:
        for runtime in args.runtime or ["gpu", "cpu"]:
            tag = build(runtime)
            sizes[tag] = image_checks(tag, runtime)
            container_run(tag, runtime, models, args.gpu)
        if not args.no_compose:
            if "cnnzoo:gpu" not in sizes:  # compose serves the gpu image; build it when not done above
                build("gpu")
            with tempfile.TemporaryDirectory(prefix="cnnzoo-ct-") as workdir:
                compose_run(Path(workdir), models, args.gpu)
        if args.train:
            with tempfile.TemporaryDirectory(prefix="cnnzoo-ct-") as workdir:
                sizes["cnnzoo-train:gpu"] = train_run(Path(workdir), next(iter(sizes), "cnnzoo:gpu"), args.gpu)
    except CheckFailed as failure:
        print(f"FAIL {failure}")
        return 1
    print("all checks passed; image sizes: " + ", ".join(f"{t} {s / 1e9:.2f} GB" for t, s in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
