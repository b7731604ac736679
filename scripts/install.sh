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
# rfc3987-syntax comes in through JupyterLab (jupyter-events wants jsonschema[format-nongpl]) and
# builds ~35 Earley parsers when imported, which jsonschema does eagerly and Ray imports jsonschema
# at startup: about 1.5-2 s of CPU in every Ray worker process on a small machine (every actor,
# every Ray Train worker). It only checks the "iri" formats, which no schema here uses; without it
# jsonschema skips those checks. See python-jsonschema/jsonschema#1428.
.venv/bin/python -m pip uninstall --quiet --yes rfc3987-syntax
echo "installed into $(pwd)/.venv"
