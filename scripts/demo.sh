#!/usr/bin/env bash
# One command on a new machine: install, then run the Ad Relevance pipeline for yesterday's window
# on the embedded local backend (a per-run Ray cluster of local processes, CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export DAGSTER_HOME=${DAGSTER_HOME:-$(pwd)/.dagster_home}
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
exec .venv/bin/dmp run ad-relevance "$@"
