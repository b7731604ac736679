# syntax=docker/dockerfile:1.7
# The Dagster code-location image: the gRPC code server, the run pods K8sRunLauncher starts, and
# X-Ray (`dmp xray`). Installed from the same locked dependencies as development (constraints.txt).
# Build from the repository root (the context must be the root; see code-location.Dockerfile.dockerignore):
#   docker build -f deploy/docker/code-location.Dockerfile \
#     -t registry.example.com/ml-platform/dmp-code-location:0.1.0 .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# The code location submits work to Ray clusters and never trains: the CPU torch wheel is enough.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
# torch first and alone, pinned: an unpinned torch would pull a multi-GB CUDA build.
RUN pip install -c constraints.txt --index-url "${TORCH_INDEX_URL}" \
        --extra-index-url https://pypi.org/simple "torch==2.13.0"
COPY discord_ml_platform ./discord_ml_platform
COPY pipelines ./pipelines
COPY resources ./resources
# dagster-postgres: the production instance keeps runs and events in PostgreSQL (dagster.prod.yaml).
RUN pip install -c constraints.txt . dagster-postgres \
 && python -c "import dagster, dagster_k8s, dagster_postgres, discord_ml_platform, pipelines"

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="dmp-code-location" \
      org.opencontainers.image.description="Dagster code location, run worker and X-Ray of the discord-ml-platform" \
      org.opencontainers.image.licenses="Apache-2.0"
# uid/gid 1000, as the Helm values' and X-Ray's pod security contexts expect.
RUN groupadd --gid 1000 dagster \
 && useradd --uid 1000 --gid 1000 --home-dir /home/dagster --create-home --shell /usr/sbin/nologin dagster \
 && mkdir -p /opt/dagster/dagster_home /opt/dagster/app \
 && chown -R 1000:1000 /opt/dagster
COPY --from=build /opt/venv /opt/venv
COPY --chown=1000:1000 workspace.yaml /opt/dagster/app/workspace.yaml
ENV PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=disabled
WORKDIR /opt/dagster/app
USER 1000:1000
EXPOSE 3030
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "3030", "--module-name", "pipelines.definitions"]
