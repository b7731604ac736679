# syntax=docker/dockerfile:1.7
# The Ray image of every KubeRay cluster: rayproject/ray of the Ray version pinned in pyproject.toml
# plus our package (the Ray jobs import discord_ml_platform), from the same locked dependencies
# (constraints.txt). Two variants, built from the repository root:
#   docker build -f deploy/docker/ray.Dockerfile --build-arg RAY_VARIANT=cpu \
#     -t registry.example.com/ml-platform/dmp-ray:0.1.0-cpu .
#   docker build -f deploy/docker/ray.Dockerfile --build-arg RAY_VARIANT=gpu \
#     -t registry.example.com/ml-platform/dmp-ray:0.1.0-gpu .
# `gpu` is Ray's default CUDA 12.x image; its torch comes from the matching CUDA wheel index.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
ARG RAY_VARIANT=cpu

FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${RAY_VARIANT}
ARG RAY_VERSION
ARG RAY_VARIANT
ARG TORCH_CUDA=cu128
LABEL org.opencontainers.image.title="dmp-ray" \
      org.opencontainers.image.description="Ray ${RAY_VERSION} (${RAY_VARIANT}) with the discord-ml-platform package" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0
# The base image's user `ray` (uid 1000, gid 100) owns its Python environment: no root needed.
USER 1000:100
WORKDIR /home/ray/dmp-src
COPY --chown=1000:100 constraints.txt pyproject.toml README.md ./
COPY --chown=1000:100 discord_ml_platform ./discord_ml_platform
COPY --chown=1000:100 pipelines ./pipelines
COPY --chown=1000:100 resources ./resources
# torch first and alone, from the wheel index of the variant; then the package with every
# dependency pinned by constraints.txt (ray stays the base image's, the same version). Without
# rfc3987-syntax (JupyterLab's, compiled on import by jsonschema, which Ray imports), every Ray
# worker process starts about a second faster: see scripts/install.sh.
RUN case "${RAY_VARIANT}" in \
      cpu) torch_index=https://download.pytorch.org/whl/cpu ;; \
      gpu) torch_index="https://download.pytorch.org/whl/${TORCH_CUDA}" ;; \
      *) echo "RAY_VARIANT must be cpu or gpu, not ${RAY_VARIANT}" >&2; exit 1 ;; \
    esac \
 && pip install -c constraints.txt --index-url "${torch_index}" \
        --extra-index-url https://pypi.org/simple "torch==2.13.0" \
 && pip install -c constraints.txt . \
 && pip uninstall --yes rfc3987-syntax \
 && python -c "import ray, discord_ml_platform; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"
WORKDIR /home/ray
USER 1000:100
