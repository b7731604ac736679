"""The pipeline on Postgres storage: dagster.prod.yaml's storage against a real, throwaway server.

The server is started and stopped by the test (``initdb`` + ``pg_ctl``, a temp data dir, a free
port on 127.0.0.1); scripts/install_postgres.sh installs the Debian package. Without it the test
skips. As root, the server runs as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from discord_ml_platform.backends.processes import free_ports

from .deploy_files import ROOT

pytestmark = [pytest.mark.ray]


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    db: str

    def env(self) -> dict[str, str]:
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": self.db}

    def connect(self, db: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db or self.db,
                                password="unused-trust-auth", connect_timeout=5)


def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("dagster_postgres")
    pytest.importorskip("psycopg2")
    bindir = postgres_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not found (scripts/install_postgres.sh installs them)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="dmp-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            account = pwd.getpwnam("postgres")
        except KeyError:
            account = None
        if runuser is None or account is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root without a postgres user to run the server as")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    [port] = free_ports(1)
    server = Postgres("127.0.0.1", port, "dmp", "dagster")

    def run(*args: str, timeout: float = 120) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=timeout)

    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", server.user, "--auth=trust", "-E", "UTF8", "--no-locale")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        started = True
        conn = server.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {server.db}")
        conn.close()
        yield server
    except subprocess.CalledProcessError as err:
        pytest.fail(f"{err.cmd}: {err.stderr}\n{log.read_text() if log.exists() else ''}")
    finally:
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def prod_like_home(tmp_path: Path) -> Path:
    """dagster.prod.yaml with the launcher and coordinator swapped for in-process ones."""
    config = yaml.safe_load((ROOT / "dagster.prod.yaml").read_text())
    config.pop("run_launcher")  # the default launcher: runs in this process, not in a Kubernetes Job
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.mark.timeout(400)
def test_platform_smoke_test_runs_on_postgres_storage(postgres: Postgres, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from pipelines.definitions import build_definitions

    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    home = prod_like_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        job = build_definitions().resolve_job_def("platform_smoke_test")
        for _ in range(3):
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            # Ray's dashboard can answer before its job agent registered (seen on a loaded 2-core
            # machine): the run fails at submission, with its events stored all the same. Two
            # retries; the real fix is a retry on that 500 in discord_ml_platform.jobs.client.
            if result.success or "No available agent" not in repr(result.all_events):
                break
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        run_id = result.run_id
    # Read back with a fresh instance, then straight from the database.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("platform_smoke")) is not None
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("SUCCESS",)]
            cur.execute("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s "
                        "GROUP BY dagster_event_type", (run_id,))
            counts = dict(cur.fetchall())
    finally:
        conn.close()
    assert counts.get("ASSET_MATERIALIZATION", 0) >= 1
    # Stored under the event type's value (RUN_SUCCESS is still "PIPELINE_SUCCESS" in the database).
    assert counts.get(dg.DagsterEventType.RUN_SUCCESS.value) == 1
    assert counts.get(dg.DagsterEventType.STEP_SUCCESS.value, 0) >= 1
    assert counts.get(None, 0) > 0  # plain log lines (cluster phases, job output) are stored too
