"""Fixtures for the X-Ray tests: a sandbox API server (no operator) holding RayClusters, fake local
clusters (records whose "head" is a sleeping process we started), and a stand-in notebook server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import cluster_labels

STANDIN = Path(__file__).with_name("standin_notebook.py")
TOKEN = "xray-test-token-4f1c"
pytest.importorskip("fastapi")


def standin_command(port: int, workdir: Path, idle_timeout_s: int) -> list[str]:
    """argv of the stand-in notebook server."""
    return [sys.executable, str(STANDIN), str(port)]


@pytest.fixture(scope="module")
def xray_root() -> Iterator[Path]:
    """A short temp dir for the module's state (notebook records, local records)."""
    import shutil

    root = Path(tempfile.mkdtemp(prefix="dmpx-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def api_server(xray_root: Path) -> Iterator[Any]:
    """A sandbox Kubernetes API (no operator) with namespaces ``ray`` and ``ml-research``."""
    pytest.importorskip("kubernetes")
    from kubernetes import client

    from discord_ml_platform.sandbox.apiserver import ApiServer

    with ApiServer() as server:
        server.write_kubeconfig(xray_root / "kubeconfig")
        with server.api_client() as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "ml-research"}})
        yield server


@pytest.fixture(scope="module")
def kuberay(api_server: Any, xray_root: Path) -> Iterator[Any]:
    """The kuberay backend on the sandbox, across namespaces."""
    from discord_ml_platform.backends.kuberay import KubeRayBackend
    from discord_ml_platform.backends.kuberay_retry import RetryPolicy

    backend = KubeRayBackend(str(xray_root / "kubeconfig"), poll_interval_s=0.05,
                             retry=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2, deadline_s=10))
    yield backend
    backend.close()


def add_raycluster(backend: Any, name: str, *, namespace: str = "ray", owner: str = "ada", team: str = "ads",
                   gpu_type: str = "cpu", gpus_per_worker: int = 0, workers: int = 1, ready_workers: int | None = None,
                   run_id: str | None = None, ready: bool = True, dashboard_port: int = 8265,
                   image: str | None = None) -> None:
    """Create a RayCluster through the backend and (``ready``) fill its status the way KubeRay does."""
    extra = {"image": image} if image else {}
    spec = ClusterSpec(name=name, namespace=namespace, owner=owner, team=team, gpu_type=gpu_type,
                       gpus_per_worker=gpus_per_worker, workers=workers, run_id=run_id, memory_per_worker="4Gi",
                       **extra)
    backend.create(spec)
    if not ready:
        return
    status = {
        "state": "ready",
        "desiredWorkerReplicas": workers,
        "readyWorkerReplicas": workers if ready_workers is None else ready_workers,
        "head": {"podIP": "127.0.0.1", "serviceIP": "127.0.0.1", "serviceName": f"{name}-head-svc"},
        "endpoints": {"dashboard": str(dashboard_port), "gcs-server": "6379", "client": "10001"},
        "conditions": [
            {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady",
             "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            {"type": "RayClusterProvisioned", "status": "True", "reason": "AllPodRunningAndReadyFirstTime"},
        ],
    }
    backend.custom.patch_namespaced_custom_object_status("ray.io", "v1", namespace, "rayclusters", name,
                                                         {"status": status})


def add_event(api_server: Any, cluster: str, namespace: str, reason: str, message: str, kind: str = "Normal") -> None:
    """A Kubernetes event about the cluster."""
    from kubernetes import client

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {"metadata": {"name": f"{cluster}.{reason.lower()}", "namespace": namespace},
             "involvedObject": {"kind": "RayCluster", "name": cluster, "namespace": namespace},
             "reason": reason, "message": message, "type": kind, "count": 1, "lastTimestamp": now,
             "firstTimestamp": now}
    with api_server.api_client() as api:
        client.CoreV1Api(api).create_namespaced_event(namespace, event)


class FakeLocalClusters:
    """Local cluster records whose head is a sleeping process of ours (the LocalBackend lists and
    deletes them like real ones, by pid)."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "local-state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def add(self, name: str, *, owner: str = "grace", team: str = "ranking", gpu_type: str = "a10g",
            gpus_per_worker: int = 2, workers: int = 2, age: timedelta = timedelta(hours=2),
            run_id: str | None = None, log_lines: tuple[str, ...] = ("head started", "GCS up"),
            raw_labels: dict[str, str] | None = None) -> Path:
        """Write a record (labels as given in ``raw_labels`` override the valid ones)."""
        created = datetime.now(UTC) - age
        head = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers_procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                          start_new_session=True) for _ in range(workers)]
        self.procs += [head, *workers_procs]
        temp_dir = Path(tempfile.mkdtemp(prefix="t-", dir=self.state_dir))
        log_dir = self.state_dir / "logs" / name
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "head.log").write_text("".join(f"{line}\n" for line in log_lines))
        labels = cluster_labels(name=name, owner=owner, team=team, gpu_type=gpu_type,
                                expires_at=created + timedelta(hours=8), run_id=run_id)
        labels.update(raw_labels or {})
        record = {
            "name": name, "labels": labels, "created_at": created.isoformat(), "desired_workers": workers,
            "temp_dir": str(temp_dir), "log_dir": str(log_dir), "auth_mode": "disabled", "head_pid": head.pid,
            "gcs_port": 6390, "dashboard_port": 1, "client_port": 10011,
            "worker_pids": [p.pid for p in workers_procs],
            # Start times tell our processes from later ones with the same PID; without them the
            # backend does not trust the PIDs of a record (a sleeping stand-in proves nothing else).
            "head_started": psutil.Process(head.pid).create_time(),
            "worker_started": [psutil.Process(p.pid).create_time() for p in workers_procs],
            "spec": {"name": name, "namespace": "local", "gpu_type": gpu_type, "gpus_per_worker": gpus_per_worker,
                     "workers": workers, "image": "rayproject/ray:2.60.0", "env": {"API_KEY": "do-not-show"}},
        }
        path = self.state_dir / f"{name}.json"
        path.write_text(json.dumps(record))
        return path

    def close(self) -> None:
        """Stop every process we started (most are gone already, deleted through the backend)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def fake_local(xray_root: Path) -> Iterator[FakeLocalClusters]:
    """Fake local clusters for the module."""
    fakes = FakeLocalClusters(xray_root)
    yield fakes
    fakes.close()


# TestClient's default Host, and the loopback names the browser and CLI tests use.
TEST_HOSTS = ("testserver", "127.0.0.1", "localhost")


def make_settings(root: Path, **overrides: Any) -> Any:
    """Test settings: our token, the test hosts, no listing cache, notebook state under ``root``."""
    from discord_ml_platform.xray.settings import XRaySettings

    values: dict[str, Any] = {"token": TOKEN, "allowed_hosts": TEST_HOSTS, "state_dir": root / "xray-state", "cache_ttl_s": 0.0,
                              "dagster_url": "http://dagster.example:3000", "delete_timeout_s": 20.0}
    values.update(overrides)
    return XRaySettings(**values)


def standin_launchers(root: Path, backends: tuple[str, ...] = ("local", "kuberay")) -> dict[str, Any]:
    """The stand-in notebook launcher for every backend."""
    from discord_ml_platform.xray.notebook_local import LocalProcessLauncher

    return {name: LocalProcessLauncher(root / "nb-work", command=standin_command) for name in backends}


def auth(token: str = TOKEN) -> dict[str, str]:
    """Header with the dashboard token."""
    return {"Authorization": f"Bearer {token}"}
