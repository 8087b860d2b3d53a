# The vidpred image: every pipeline component runs in it (configs/*/pipeline.yaml: pipeline.base_image).
#   make image                       (Docker when a daemon answers, else podman: scripts/container.sh)
#   docker build -t vidpred:0.1.0 .  (by hand, with Docker Hub's python:3.11-slim)
# Components are KFP lightweight Python components that import `vidpred` (install_kfp_package=False):
# nothing is pip-installed at run time, so the image carries the package (installed from its wheel, not
# editable: the configs, pipelines/ and components/ ship inside it), its locked dependencies and kfp.
#
# BASE_IMAGE: any Debian-based image. python:3.11-slim brings its own Python 3.11; a plain Debian bookworm
# base (what `make image` makes with debootstrap where Docker Hub cannot be reached) gets Debian's
# python3 (3.11 in bookworm) from apt in the first step.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS base
# on every layer of ours: `make image` prunes the dangling images of earlier builds by this label (an old
# locked-dependency layer too, once a new lock replaced it)
LABEL org.opencontainers.image.title="vidpred"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site \
    GX_ANALYTICS_ENABLED=false \
    MLFLOW_ENABLE_TELEMETRY=false \
    DO_NOT_TRACK=1 \
    VIDPRED_HOME=/workspace \
    VIDPRED_CACHE=/workspace/cache \
    TORCH_HOME=/workspace/torch \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# git: DVC and the run tags (git sha); libglib: OpenCV; ffmpeg libraries come with the PyAV wheel.
# The interpreter: the base's python3.11 if it has one, else Debian's python3 + venv.
RUN set -eux; \
    py=""; command -v python3.11 >/dev/null || py="python3 python3-venv"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git libglib2.0-0 $py; \
    rm -rf /var/lib/apt/lists/*; \
    python3.11 -m venv /opt/venv; \
    useradd --create-home --uid 1000 --shell /bin/bash vidpred; \
    mkdir -p /workspace; chown vidpred /workspace

# The locked dependencies in their own layer: reused while requirements.lock is unchanged. Plain builds use
# PyPI; `make image` under podman mounts the host's pip settings (as /mnt/host/pip.conf, PIP_CONFIG_FILE), CA
# bundle and local wheel folders read-only under /mnt/host (scripts/container.sh) — buildah leaves their
# empty mount points there, nothing else.
ARG PIP_CONFIG_FILE
COPY requirements.lock /tmp/requirements.lock
RUN pip install -r /tmp/requirements.lock && rm /tmp/requirements.lock

# The package as a wheel (a throwaway stage: no source tree in the final image)
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY configs ./configs
COPY components ./components
COPY pipelines ./pipelines
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM base
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && cd / && python -c "import vidpred, components, pipelines; from vidpred.config import CONFIG_DIR; assert (CONFIG_DIR / 'smoke' / 'pipeline.yaml').is_file(), CONFIG_DIR"

USER vidpred
WORKDIR /workspace
