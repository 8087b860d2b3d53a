# The vidpred image: every pipeline component runs in it (configs/*/pipeline.yaml: pipeline.base_image).
#   docker build -t vidpred:0.1.0 .
# Components are KFP lightweight Python components that import `vidpred`; nothing is pip-installed at run
# time, so the image carries the package, its locked dependencies, the configs and the pipeline code.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DVC_NO_ANALYTICS=1 \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site \
    GX_ANALYTICS_ENABLED=false \
    MLFLOW_ENABLE_TELEMETRY=false \
    DO_NOT_TRACK=1 \
    VIDPRED_HOME=/workspace \
    VIDPRED_CACHE=/workspace/cache \
    TORCH_HOME=/workspace/torch \
    PYTHONPATH=/opt/vidpred

# git: DVC and the run tags (git sha); libgl/libglib: OpenCV; ffmpeg libraries come with the PyAV wheel
RUN apt-get update \
 && apt-get install -y --no-install-recommends git libglib2.0-0 libgl1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vidpred
# dependencies first (their layer is reused while only the code changes)
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY src ./src
COPY configs ./configs
COPY components ./components
COPY pipelines ./pipelines
# editable: vidpred finds configs/ next to src/ (vidpred.config.REPO_ROOT)
RUN pip install --no-deps -e . && python -c "import vidpred, components, pipelines"

RUN useradd --create-home --uid 1000 vidpred && mkdir -p /workspace && chown vidpred /workspace
USER vidpred
WORKDIR /workspace
