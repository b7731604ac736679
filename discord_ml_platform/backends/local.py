"""The embedded ``local`` backend: a Ray cluster per run as real processes on this machine.

Each cluster gets a head (``ray start --head --block``) and one ``ray start --block`` process per
worker, every one in its own process group, with ports chosen free for this cluster (two clusters
on one machine never collide), a temp dir of its own, ``RAY_AUTH_MODE`` set explicitly, and the
project's Python first on ``PATH`` so job entrypoints import the project. A JSON record per
cluster under the state dir lets other processes (the CLI, the dashboard, the sweeper) list and
delete it. Deleting stops exactly the processes we started, never ``ray stop``.

Records are private (files 0600 in a 0700 dir) and written atomically (temp file, fsync, rename,
fsync of the dir). Each keeps its PIDs with their start times: a PID whose process started at
another time belongs to someone else now (the kernel reuses numbers), counts as dead and is never
signalled. A record from before start times were kept is trusted only where the command line
proves it (the head names the cluster's temp dir, a worker its GCS address), and the temp dir
only where it is a ``dmp-*`` dir right under the temp root. The record is written before the head
is spawned, so no head runs that no record names, even if this process dies in between.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from discord_ml_platform.backends.base import (
    ClusterEndpoints,
    ClusterError,
    ClusterHandle,
    ClusterInfo,
    ClusterNotReadyError,
    PhaseCallback,
    PhaseEvent,
)
from discord_ml_platform.backends.local_records import (
    InvalidRecordError,
    LocalClusterRecord,
    RecordStore,
    private_dir,
)
from discord_ml_platform.backends.processes import (
    OrphanedGroup,
    Root,
    free_ports,
    port_accepts,
    start_time,
    tail,
    terminate_tree,
)
from discord_ml_platform.settings import PlatformSettings, env_variable
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import cluster_labels

log = logging.getLogger(__name__)

BACKEND_NAME = "local"
# Ports every Ray node needs; all chosen free so parallel clusters do not collide on defaults
# such as the dashboard agent's 52365 or the client server's 10001.
_NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
_HEAD_PORTS = ("port", "dashboard-port", "ray-client-server-port")
MAX_WORKER_RESTARTS = 3


def _local_settings() -> PlatformSettings:
    """The settings a ``LocalBackend`` built without paths uses, from this process's environment.

    Only ``DMP_LOCAL_STATE_DIR`` and ``DMP_RAY_TEMP_ROOT`` are read: a bad value of any other
    ``DMP_*`` variable (say ``DMP_BACKEND=cloud``) is no reason to refuse a local backend.
    """
    wanted = {env_variable("local_state_dir"), env_variable("ray_temp_root")}
    return PlatformSettings.from_env({key: value for key, value in os.environ.items() if key in wanted})


def ray_environment(auth_mode: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Ray processes and clients: explicit auth mode, no usage stats, our Python first."""
    env = dict(os.environ if base is None else base)
    env["RAY_AUTH_MODE"] = auth_mode
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.pop("RAY_ADDRESS", None)
    # A job's entrypoint runs the `python` on the head's PATH: it must be this environment's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def cluster_process_environment(auth_mode: str, gcs_port: int) -> dict[str, str]:
    """Environment of a local cluster's own processes: :func:`ray_environment` plus ``RAY_ADDRESS``.

    Every Ray worker inherits it. Ray code that looks for "the" cluster without an address
    (Ray Train's placement-group cleaner queries the state API that way) otherwise scans the
    machine's processes and fails with "Found multiple active Ray instances" as soon as a second
    local cluster runs beside this one.
    """
    return {**ray_environment(auth_mode), "RAY_ADDRESS": f"127.0.0.1:{gcs_port}"}


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


class LocalBackend:
    """Ray clusters as local processes; the default for laptops, CI and tests.

    Args:
        state_dir: where cluster records and logs are kept (default ``$DMP_LOCAL_STATE_DIR`` or
            ``~/.dmp/local-clusters``).
        auth_mode: value of ``RAY_AUTH_MODE`` for every process and client (Ray 2.60 turns token
            auth on by itself when ``~/.ray/auth_token`` exists, so we always set it).
        temp_root: parent of each cluster's Ray temp dir (default ``$DMP_RAY_TEMP_ROOT`` or
            ``/tmp``); kept short because Ray puts Unix sockets below it.
    """

    name = BACKEND_NAME

    def __init__(self, state_dir: Path | None = None, auth_mode: str = "disabled", temp_root: Path | None = None):
        if not (state_dir and temp_root):
            settings = _local_settings()  # read once, for whichever default is needed
            state_dir = state_dir or settings.local_state_path
            temp_root = temp_root or settings.ray_temp_path
        self.state_dir = Path(state_dir)
        self.auth_mode = auth_mode
        self.temp_root = Path(temp_root)
        self.records = RecordStore(self.state_dir)

    def close(self) -> None:
        """Nothing to release: records are files, clusters live on after this object."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Records -------------------------------------------------------------------------------

    def record(self, handle: ClusterHandle) -> LocalClusterRecord:
        """The stored record of a cluster; raises ``ClusterError`` when unknown or unreadable."""
        record = self.records.read(handle.name)
        if record is None:
            raise ClusterError(f"no local cluster named {handle.name!r} in {self.state_dir}")
        return record

    def _stop(
        self, record: LocalClusterRecord, grace_s: float, spawned: Sequence[subprocess.Popen[bytes]] = ()
    ) -> None:
        """Stop what is ours of the cluster (and ``spawned``, our own children) and remove its temp dir.

        Everything gets SIGTERM at once; `ray start --block` then waits forever on children that are
        already gone, so whatever still runs after a short grace gets SIGKILL. A per-run cluster
        holds nothing that needs a graceful drain: the job was stopped, its outputs are on shared storage.
        """
        marker = record.owned_temp_dir(self.temp_root)
        # A child we have not reaped keeps its PID; one that exited may leave its group behind.
        children: builtins.list[Root] = [p.pid if p.poll() is None else OrphanedGroup(p.pid) for p in spawned]
        terminate_tree([*record.stop_roots(self.temp_root), *children], marker=marker, grace_s=grace_s)
        if marker:
            shutil.rmtree(marker, ignore_errors=True)

    # Protocol --------------------------------------------------------------------------------

    def create(self, spec: ClusterSpec) -> ClusterHandle:
        """Save the record, start the head, wait for its GCS port, then start the workers.

        Idempotent: a cluster of the same name whose head still runs (or is being started) is
        returned as it is. Whatever stops it half-way (an error, Ctrl-C) stops what it started.
        """
        handle = ClusterHandle(spec.name, spec.namespace, self.name)
        try:
            existing = self.records.read(spec.name)
        except InvalidRecordError:
            existing = None
            self.delete(handle)  # unreadable: it names nothing we may stop; make room
        if existing is not None:
            if existing.head_process(self.temp_root) is not None or existing.starting():
                return handle
            self.delete(handle)  # a dead leftover of the same name: clear it first
        created = datetime.now(UTC)
        private_dir(self.state_dir)
        # No cluster name in it: Ray nests a 45-character session dir and socket names below, and
        # Unix socket paths are limited to 107 bytes.
        self.temp_root.mkdir(parents=True, exist_ok=True)
        temp_dir = Path(tempfile.mkdtemp(prefix="dmp-", dir=self.temp_root))
        log_dir = self.state_dir / "logs" / spec.name
        private_dir(log_dir.parent)
        private_dir(log_dir)
        head_ports = dict(zip(_HEAD_PORTS + _NODE_PORTS, free_ports(len(_HEAD_PORTS) + len(_NODE_PORTS)), strict=True))
        env = cluster_process_environment(self.auth_mode, head_ports["port"])
        head_cmd = [
            _ray_executable(),
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-host",
            "127.0.0.1",
            "--include-dashboard",
            "true",
            "--temp-dir",
            str(temp_dir),
            "--num-cpus",
            str(max(1, math.ceil(spec.head_cpus))),
            "--num-gpus",
            "0",
            "--object-store-memory",
            str(spec.object_store_bytes(spec.head_memory)),
            *[arg for key, port in head_ports.items() for arg in (f"--{key}", str(port))],
        ]
        record = LocalClusterRecord(
            name=spec.name,
            labels=cluster_labels(
                name=spec.name,
                owner=spec.owner,
                team=spec.team,
                gpu_type=spec.gpu_type,
                expires_at=spec.expires_at(created),
                run_id=spec.run_id,
                deployment=spec.deployment,
                extra=spec.labels,
            ),
            created_at=created.isoformat(),
            desired_workers=spec.workers,
            temp_dir=str(temp_dir),
            log_dir=str(log_dir),
            auth_mode=self.auth_mode,
            head_pid=0,  # not spawned yet
            gcs_port=head_ports["port"],
            dashboard_port=head_ports["dashboard-port"],
            client_port=head_ports["ray-client-server-port"],
            spec=spec.model_dump(mode="json"),
        )
        spawned: builtins.list[subprocess.Popen[bytes]] = []
        try:
            # Saved before the head exists: should this process die right after the spawn, the
            # record still names the head (by its temp dir) for delete() and the sweepers.
            self.records.save(record)
            head = self._spawn(head_cmd, log_dir / "head.log", env)
            spawned.append(head)
            record.head_pid, record.head_started = head.pid, start_time(head.pid)
            self.records.save(record)
            self._wait_for_gcs(record, timeout_s=60)
            for index in range(spec.workers):
                worker = self._start_worker(spec, record, index, env)
                spawned.append(worker)
                record.set_worker(index, worker.pid, start_time(worker.pid))
                self.records.save(record)
        except BaseException:
            self._discard(record, spawned)
            raise
        return handle

    def wait_ready(
        self, handle: ClusterHandle, timeout_s: float = 120, on_phase: PhaseCallback | None = None
    ) -> ClusterEndpoints:
        """Wait for the dashboard, the Jobs API and every worker node; report each phase once."""
        record = self.record(handle)
        endpoints = record.endpoints()
        deadline = time.monotonic() + timeout_s
        reported: set[tuple[str, int]] = set()

        def report(phase: str, message: str, ready: int) -> None:
            if on_phase and (phase, ready) not in reported:
                reported.add((phase, ready))
                on_phase(PhaseEvent(phase, message, ready, record.desired_workers, datetime.now(UTC)))

        report("pending", f"starting Ray head with {record.desired_workers} worker(s)", 0)
        head_up = False
        restarts = 0
        while time.monotonic() < deadline:
            if record.head_pid == 0:  # another process is still spawning the head: read its update
                record = self.record(handle)
            self._raise_if_dead(record)
            restarts += self._restart_dead_workers(record, report, restarts)
            if not head_up:
                head_up = _http_ok(f"{endpoints.dashboard_url}/api/version")
                if head_up:
                    report("head-ready", f"head ready, dashboard at {endpoints.dashboard_url}", 0)
            if head_up:
                # The dashboard answers before the head's own node has registered; `ray start`
                # gives that 30 s (hard-coded) and then takes the head down, so a cluster is only
                # ready once the head node itself is ALIVE too.
                head_alive, ready = self._alive_nodes(endpoints.dashboard_url)
                if ready is not None and head_alive:
                    report("workers", f"workers {ready}/{record.desired_workers}", ready)
                    if ready >= record.desired_workers and _http_ok(f"{endpoints.dashboard_url}/api/jobs/"):
                        report("ready", "cluster ready", ready)
                        return endpoints
            time.sleep(0.2)
        raise ClusterNotReadyError(
            f"local cluster {handle.name!r} not ready after {timeout_s:.0f}s "
            f"(head {'up' if head_up else 'not answering'}); head log:\n{tail(Path(record.log_dir) / 'head.log')}"
        )

    def endpoints(self, handle: ClusterHandle) -> ClusterEndpoints:
        """Endpoints from the cluster's record."""
        return self.record(handle).endpoints()

    def list(self, label_selector: Mapping[str, str] | None = None) -> list[ClusterInfo]:
        """Clusters with a record in the state dir whose labels match ``label_selector``.

        A cluster is ``ready`` while its head is the process we started, ``pending`` while its head
        is being spawned, else ``dead``. An unreadable record is listed as ``invalid`` (without
        labels, so only an unfiltered listing shows it) and logged; it never hides the others.
        """
        infos = []
        wanted = dict(label_selector or {})
        for name in self.records.names():
            try:
                info = self._info(name)
            except Exception as err:  # one bad record must not hide the others
                log.warning("local cluster record %s.json is unreadable: %s", name, err)
                info = self.records.unreadable_info(name, self.name, err)
            if info is not None and all(info.labels.get(k) == v for k, v in wanted.items()):
                infos.append(info)
        return infos

    def _info(self, name: str) -> ClusterInfo | None:
        record = self.records.read(name)
        if record is None:  # deleted meanwhile
            return None
        if record.head_process(self.temp_root) is not None:
            status = "ready"
            ready = sum(record.worker_process(i) is not None for i in range(len(record.worker_pids)))
        else:
            status, ready = ("pending" if record.starting() else "dead"), 0
        namespace = record.spec.get("namespace")
        return ClusterInfo(
            handle=ClusterHandle(record.name, namespace if isinstance(namespace, str) else "local", self.name),
            labels=record.labels,
            status=status,
            created_at=record.created,
            desired_workers=record.desired_workers,
            ready_workers=ready,
            endpoints=record.endpoints(),
            details={"spec": record.spec, "log_dir": record.log_dir},
        )

    def delete(self, handle: ClusterHandle, timeout_s: float = 60) -> None:
        """Stop every process of the cluster that is still ours and remove its files.

        Ours: the recorded PIDs whose start times match, their descendants and groups, and processes
        naming its temp dir. A recorded PID that now names another process is never signalled. An
        unreadable record is removed without signalling anything.
        """
        try:
            record = self.records.read(handle.name)
        except InvalidRecordError as err:
            log.warning("removing unreadable local cluster record (nothing it names is stopped): %s", err)
            self.records.remove(handle.name)
            return
        if record is None:
            return
        self._stop(record, grace_s=min(timeout_s, 2.0))
        self.records.remove(handle.name)

    def _discard(self, record: LocalClusterRecord, spawned: builtins.list[subprocess.Popen[bytes]]) -> None:
        """Undo a create that did not finish: stop what it spawned, remove the record."""
        self._stop(record, grace_s=2.0, spawned=spawned)
        self.records.remove(record.name)

    # Helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _spawn(cmd: builtins.list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:
            # Own session and process group: we stop exactly this tree, and a Ctrl-C aimed at the
            # caller's terminal does not kill the cluster before our cleanup runs.
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )

    def _start_worker(
        self, spec: ClusterSpec, record: LocalClusterRecord, index: int, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        ports = dict(zip(_NODE_PORTS, free_ports(len(_NODE_PORTS)), strict=True))
        memory = spec.memory_per_worker or "1Gi"
        cmd = [
            _ray_executable(),
            "start",
            "--block",
            "--disable-usage-stats",
            "--address",
            f"127.0.0.1:{record.gcs_port}",
            "--node-ip-address",
            "127.0.0.1",
            # Nodes on one machine share the head's session dir; the head's log monitor already
            # tails every file there, and a second one would publish each log line again.
            "--include-log-monitor",
            "false",
            "--num-cpus",
            str(max(1, math.ceil(spec.cpus_per_worker or 1))),
            "--num-gpus",
            str(spec.gpus_per_worker),
            "--object-store-memory",
            str(spec.object_store_bytes(memory)),
            *[arg for key, port in ports.items() for arg in (f"--{key}", str(port))],
        ]
        return self._spawn(cmd, Path(record.log_dir) / f"worker-{index}.log", env)

    def _restart_dead_workers(
        self, record: LocalClusterRecord, report: Callable[[str, str, int], None], restarts_so_far: int
    ) -> int:
        """Start again any worker whose `ray start` exited (on a loaded machine a node can time out
        joining); give up with its log after ``MAX_WORKER_RESTARTS`` in total."""
        restarted = 0
        for index in range(len(record.worker_pids)):
            if record.worker_process(index) is not None:
                continue
            log_path = Path(record.log_dir) / f"worker-{index}.log"
            if restarts_so_far + restarted >= MAX_WORKER_RESTARTS:
                raise ClusterNotReadyError(
                    f"worker {index} of {record.name!r} exited {MAX_WORKER_RESTARTS + 1} times; its log:\n{tail(log_path)}"
                )
            report("worker-restart", f"worker {index} exited while joining; starting it again", index)
            # Already validated when created, against the catalog then in effect (which may hold pools
            # the built-in catalog lacks): rebuild it as it was, without validating again.
            spec = ClusterSpec.model_construct(**record.spec)
            env = cluster_process_environment(record.auth_mode, record.gcs_port)
            worker = self._start_worker(spec, record, index, env)
            try:
                record.set_worker(index, worker.pid, start_time(worker.pid))
                self.records.save(record)
            except BaseException:  # not recorded: nothing else would ever stop it
                terminate_tree([worker.pid], grace_s=2.0)
                raise
            restarted += 1
        return restarted

    def _wait_for_gcs(self, record: LocalClusterRecord, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not port_accepts("127.0.0.1", record.gcs_port):
            self._raise_if_dead(record)
            if time.monotonic() > deadline:
                raise ClusterNotReadyError(f"GCS of {record.name!r} did not open port {record.gcs_port}")
            time.sleep(0.1)

    def _raise_if_dead(self, record: LocalClusterRecord) -> None:
        if record.head_process(self.temp_root) is None and not record.starting():
            raise ClusterNotReadyError(
                f"Ray head of {record.name!r} exited; head log:\n{tail(Path(record.log_dir) / 'head.log')}"
            )

    @staticmethod
    def _alive_nodes(dashboard_url: str) -> tuple[bool, int | None]:
        """Whether the head node is ALIVE, and the alive non-head nodes (None while the dashboard
        cannot tell), according to the dashboard."""
        try:
            with urllib.request.urlopen(f"{dashboard_url}/nodes?view=summary", timeout=2) as response:
                summary = json.load(response)["data"]["summary"]
        except (OSError, ValueError, KeyError):
            return False, None
        alive = [node.get("raylet", {}) for node in summary if node.get("raylet", {}).get("state") == "ALIVE"]
        return any(r.get("isHeadNode") for r in alive), sum(1 for r in alive if not r.get("isHeadNode"))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError):
        return False
