# The serving image: the Litestar service on ONNX Runtime, with the committed models/ baked in.
# Serving dependencies only: no torch, no training or export code.
#
#   docker build -t cnnzoo:gpu .                            onnxruntime-gpu + CUDA 13 / cuDNN 9 wheels
#   docker build --build-arg RUNTIME=cpu -t cnnzoo:cpu .    plain onnxruntime, no CUDA libraries
#   docker run --gpus all -p 127.0.0.1:8000:8000 cnnzoo:gpu (cpu: drop --gpus all)
#   docker run -v "$PWD/models:/opt/cnnzoo/models:ro" ...   serve another model repository
#
# Server settings are the service's CNNZOO_* variables (README: settings), e.g. -e CNNZOO_WORKERS=2.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME=gpu

# ---- dependencies: a virtual environment, rebuilt only when pyproject.toml changes ------------
FROM ${PYTHON_IMAGE} AS dependencies
ARG RUNTIME
# Empty: the onnxruntime release pinned in docker/requirements.py.
ARG ORT_VERSION=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml docker/requirements.py /src/
RUN python /src/requirements.py --runtime "$RUNTIME" ${ORT_VERSION:+--ort-version "$ORT_VERSION"} \
        /src/pyproject.toml > /src/requirements.txt \
    && /opt/venv/bin/pip install -r /src/requirements.txt

# ---- package: the cnnzoo wheel, built from service/ and modelrepo/ alone (no training or export code) -----------
# Its build (setup.py) copies Triton's protobuf schema out of tritonclient, which the image never installs,
# and compiles its two C modules (service/_digitfield.c, service/_tinypng.c): the compiler stays in this stage.
FROM dependencies AS package
# The official image has Python's headers; a Debian-python base (the project's local stand-in for
# it, ../shared/tools/container-sandbox.sh) needs python3-dev for them.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && (test -f "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" \
        || apt-get install -y --no-install-recommends python3-dev) \
    && rm -rf /var/lib/apt/lists/*
COPY README.md setup.py /src/
COPY modelrepo /src/modelrepo
COPY service /src/service
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels /src

# ---- the image ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG RUNTIME
LABEL org.opencontainers.image.title="cnnzoo" \
      org.opencontainers.image.description="Classic CNNs on MNIST and CIFAR-10, served on ONNX Runtime" \
      cnnzoo.runtime="${RUNTIME}"
# A home of its own: ONNX Runtime keeps a small file there (without one it warns at every start).
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin cnnzoo
# The large layer first: editing service/ or README.md rebuilds only the small ones after it.
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=package /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY docker/healthcheck.py /opt/cnnzoo/healthcheck.py
# The default model repository; mount a folder over it to serve others (read-only is enough).
COPY models /opt/cnnzoo/models
# Listen on all interfaces *inside* the container; which host address publishes the port is the
# runner's choice (-p 127.0.0.1:8000:8000 keeps it local). The graceful timeout stays under
# `docker stop`'s default 10 s, so requests in flight are answered before any SIGKILL.
# The service's default providers (CUDA, then CPU) fit both variants; the NVIDIA Container
# Toolkit mounts the driver's libcuda for the capabilities named here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CNNZOO_MODEL_REPOSITORY=/opt/cnnzoo/models \
    CNNZOO_HOST=0.0.0.0 \
    CNNZOO_PORT=8000 \
    CNNZOO_GRPC_PORT=8001 \
    CNNZOO_WORKERS=auto \
    CNNZOO_WORKER_THREADS=2 \
    CNNZOO_GRACEFUL_TIMEOUT_S=8 \
    CNNZOO_KEEP_ALIVE_S=5
WORKDIR /opt/cnnzoo
USER 10001:10001
EXPOSE 8000 8001
# The server (Granian by default) handles SIGTERM itself: it stops accepting, answers requests
# in flight, then exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/cnnzoo/healthcheck.py"]
CMD ["python", "-m", "service"]
