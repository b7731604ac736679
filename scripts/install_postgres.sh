#!/usr/bin/env bash
# Install the PostgreSQL server (Debian package) for the tests that run Dagster on Postgres storage
# (tests/deploy/test_postgres_storage.py). Idempotent: does nothing when initdb is already there.
# The tests start and stop their own throwaway server (initdb + pg_ctl in a temp dir, a free port),
# so nothing is started here; where no server can be installed they skip.
set -euo pipefail

have_initdb() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_initdb; then
  echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | head -n1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_postgres: not root and no sudo; the Postgres tests will skip" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_postgres: no apt-get; install PostgreSQL yourself or the Postgres tests skip" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql-common would create and start a cluster on install; the tests want none.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/no-main-cluster.conf >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
echo "postgresql installed: $(ls -d /usr/lib/postgresql/*/bin | head -n1)"
