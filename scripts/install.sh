#!/usr/bin/env bash
# Create .venv and install the project with its pinned dependencies (CPU-only torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone: pinned to the release that resolves to a CPU wheel on CPU machines, so
# nothing later can pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
echo "installed into $(pwd)/.venv"
