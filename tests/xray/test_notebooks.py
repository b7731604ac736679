"""Notebooks: the reaper (cluster gone, exited, idle), the KubeRay pod launcher (manifest and
objects in the sandbox, garbage-collected with the cluster), and the real JupyterLab launcher."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from xray_support import add_raycluster, standin_command

from discord_ml_platform.backends import ClusterEndpoints, ClusterHandle, ClusterInfo
from discord_ml_platform.xray.notebook_local import LocalProcessLauncher, jupyterlab_command
from discord_ml_platform.xray.notebooks import NotebookManager

pytestmark = pytest.mark.timeout(90)
PLATFORM_CPU_IMAGE = "registry.example.com/ml/ray:cpu-9"


def local_info(name: str = "c1") -> ClusterInfo:
    return ClusterInfo(handle=ClusterHandle(name, "local", "local"), labels={}, status="ready",
                       created_at=datetime.now(UTC), desired_workers=0, ready_workers=0,
                       endpoints=ClusterEndpoints("http://127.0.0.1:1", "127.0.0.1:6390"))


def wait_state(manager: NotebookManager, key: str, state: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = manager.get(key)
        if record is not None and manager.view(record, with_url=False).state == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"notebook of {key} not {state} in time")


@pytest.fixture
def manager(tmp_path: Path) -> Any:
    launcher = LocalProcessLauncher(tmp_path / "work", command=standin_command)
    mgr = NotebookManager(tmp_path / "state", {"local": launcher}, idle_timeout_s=3600)
    yield mgr
    for record in mgr.records():
        mgr.stop(record.cluster)


def test_record_is_private_and_reaper_stops_notebooks_of_vanished_clusters(manager):
    record = manager.launch("local/local/c1", local_info())
    wait_state(manager, "local/local/c1", "running")
    path = manager.dir / "local__local__c1.json"
    assert path.stat().st_mode & 0o777 == 0o600 and json.loads(path.read_text())["pid"] == record.pid
    assert manager.reap({"local/local/c1"}) == []
    assert manager.reap(None) == []  # listing failed: nothing is stopped for a "missing" cluster
    assert manager.reap(set()) == ["local/local/c1: cluster gone"]
    assert manager.get("local/local/c1") is None
    assert manager.view(record, with_url=False).state == "stopped"


def test_reaper_stops_idle_notebooks_and_forgets_exited_ones(manager, monkeypatch):
    manager.idle_timeout_s = 1
    manager.launch("local/local/idle", local_info("idle"))
    wait_state(manager, "local/local/idle", "running")
    time.sleep(1.2)  # the stand-in reports its start as last activity
    assert manager.reap({"local/local/idle"}) and manager.get("local/local/idle") is None

    manager.idle_timeout_s = 3600
    record = manager.launch("local/local/exits", local_info("exits"))
    wait_state(manager, "local/local/exits", "running")
    import os
    import signal

    os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and manager.view(record, with_url=False).state != "stopped":
        time.sleep(0.1)
    assert manager.reap({"local/local/exits"}) == ["local/local/exits: exited"]


def test_reaper_thread_runs_in_the_background(manager):
    manager.launch("local/local/bg", local_info("bg"))
    manager.start_reaper(lambda: set(), interval_s=0.2)
    try:
        deadline = time.monotonic() + 10
        while manager.get("local/local/bg") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert manager.get("local/local/bg") is None
    finally:
        manager.stop_reaper()


def test_jupyterlab_command_sets_the_idle_timeouts(tmp_path):
    argv = jupyterlab_command(8899, tmp_path, 1800)
    assert argv[1:3] == ["-m", "jupyterlab"] and "--no-browser" in argv and "--port=8899" in argv
    assert "--ServerApp.shutdown_no_activity_timeout=1800" in argv
    assert "--MappingKernelManager.cull_idle_timeout=1800" in argv
    assert "--ip=127.0.0.1" in argv and not any("token" in a.lower() for a in argv)  # token via env only


def test_notebook_pod_manifest_is_locked_down():
    from discord_ml_platform.xray.notebook_pod import render_notebook_pod, render_notebook_secret

    pod = render_notebook_pod("exp", "ray", "uid-1", "exp-head-svc.ray.svc:6379", image="img:1", idle_timeout_s=600)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["privileged"] is False and ctx["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_ADDRESS"]["value"] == "exp-head-svc.ray.svc:6379"
    assert env["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "exp-notebook", "key": "token"}
    assert env["RAY_AUTH_MODE"]["value"] == "disabled"  # the policy's, unless the platform's auth mode is given
    token_pod = render_notebook_pod("exp", "ray", "uid-1", "a:6379", image="img:1", idle_timeout_s=600,
                                    auth_mode="token")
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in token_pod["spec"]["containers"][0]["env"]
    assert "--ServerApp.shutdown_no_activity_timeout=600" in container["command"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("RayCluster", "exp", "uid-1")
    assert "ray.io/cluster" not in pod["metadata"]["labels"]  # not counted as a Ray node by KubeRay
    secret = render_notebook_secret("exp", "ray", "uid-1", "tok")
    assert secret["stringData"] == {"token": "tok"} and secret["metadata"]["ownerReferences"] == [owner]


def test_pod_launcher_creates_pod_and_secret_that_go_with_the_cluster(kuberay, tmp_path):
    from kubernetes import client

    from discord_ml_platform.xray.notebook_pod import PodNotebookLauncher

    add_raycluster(kuberay, "nb-pod", owner="ada", workers=0)
    info = next(i for i in kuberay.list() if i.handle.name == "nb-pod")
    manager = NotebookManager(tmp_path, {"kuberay": PodNotebookLauncher(kuberay)}, idle_timeout_s=900)
    record = manager.launch("kuberay/ray/nb-pod", info)
    core = client.CoreV1Api(kuberay.api_client)
    pod = core.read_namespaced_pod("nb-pod-notebook", "ray")
    assert pod.spec.containers[0].env[0].value == "nb-pod-head-svc.ray.svc:6379"
    assert pod.metadata.owner_references[0].uid == info.details["uid"]
    assert core.read_namespaced_secret("nb-pod-notebook", "ray").metadata.owner_references
    view = manager.view(record, with_url=True)
    assert (view.kind, view.state, view.url) == ("pod", "pending", None)  # no kubelet in the sandbox
    # Pretend the kubelet started it: the link appears.
    core.patch_namespaced_pod_status("nb-pod-notebook", "ray", {"status": {"phase": "Running", "podIP": "10.1.2.3"}})
    assert manager.view(record, with_url=True).url == f"http://10.1.2.3:8888/lab?token={record.token}"
    kuberay.delete(info.handle, timeout_s=20)  # however the cluster goes, the notebook goes too
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and core.list_namespaced_pod("ray", label_selector=
                                                                    "app.kubernetes.io/component=notebook").items:
        time.sleep(0.1)
    assert not core.list_namespaced_pod("ray", label_selector="app.kubernetes.io/component=notebook").items
    assert not core.list_namespaced_secret("ray", label_selector="app.kubernetes.io/component=notebook").items
    assert manager.reap({"kuberay/ray/other"}) == ["kuberay/ray/nb-pod: cluster gone"]


def test_notebook_image_is_the_configured_else_the_clusters_else_the_platforms():
    from discord_ml_platform.backends.kuberay import _head_image
    from discord_ml_platform.spec import platform_config_from_yaml
    from discord_ml_platform.xray.notebook_pod import notebook_image

    config = platform_config_from_yaml(f"images:\n  cpu: {PLATFORM_CPU_IMAGE}\n")
    assert notebook_image(None, None, config) == PLATFORM_CPU_IMAGE
    assert notebook_image(None, "registry.example.com/ml/ray:c", config) == "registry.example.com/ml/ray:c"
    assert notebook_image("registry.example.com/nb:1", "registry.example.com/ml/ray:c", config) == (
        "registry.example.com/nb:1")
    # The cluster's image is what the backend reads off the head's Ray container, wherever it stands.
    containers = [{"name": "sidecar", "image": "side:1"}, {"name": "ray-head", "image": "head:1"}]
    assert _head_image({"spec": {"headGroupSpec": {"template": {"spec": {"containers": containers}}}}}) == "head:1"
    assert _head_image({"spec": {"headGroupSpec": {"template": {"spec": {"containers": containers[:1]}}}}}) == (
        "side:1")
    assert _head_image({"spec": {}}) is None


def test_pod_launcher_runs_the_clusters_image_else_the_platforms(kuberay, tmp_path):
    from dataclasses import replace

    from kubernetes import client

    from discord_ml_platform.spec import platform_config_from_yaml
    from discord_ml_platform.xray.notebook_pod import PodNotebookLauncher

    config = platform_config_from_yaml(f"images:\n  cpu: {PLATFORM_CPU_IMAGE}\n")
    add_raycluster(kuberay, "nb-img", owner="ada", workers=0, image="registry.example.com/ml/ray:nb-7")
    info = next(i for i in kuberay.list() if i.handle.name == "nb-img")
    assert info.details["image"] == "registry.example.com/ml/ray:nb-7"  # the backend reports the head's image
    launcher = PodNotebookLauncher(kuberay, platform_config=config)
    core = client.CoreV1Api(kuberay.api_client)
    own = launcher.launch(info, "tok-1", 600)
    # A cluster whose backend reports no image gets the platform's CPU image.
    unknown = replace(info, handle=replace(info.handle, name="nb-unknown"),
                      details={k: v for k, v in info.details.items() if k != "image"})
    fallback = launcher.launch(unknown, "tok-2", 600)
    try:
        assert core.read_namespaced_pod("nb-img-notebook", "ray").spec.containers[0].image == (
            "registry.example.com/ml/ray:nb-7")
        assert core.read_namespaced_pod("nb-unknown-notebook", "ray").spec.containers[0].image == PLATFORM_CPU_IMAGE
        configured = PodNotebookLauncher(kuberay, "registry.example.com/ml/notebook:3", config)
        assert configured.launch(info, "tok-3", 600).pod == "nb-img-notebook"
        assert core.read_namespaced_pod("nb-img-notebook", "ray").spec.containers[0].image == (
            "registry.example.com/ml/notebook:3")
    finally:
        launcher.stop(own)
        launcher.stop(fallback)
        kuberay.delete(info.handle, timeout_s=20)


@pytest.mark.timeout(120)
@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="jupyterlab is not installed")
def test_real_jupyterlab_starts_with_ray_address_and_token(tmp_path):
    launcher = LocalProcessLauncher(tmp_path / "work")
    manager = NotebookManager(tmp_path / "state", {"local": launcher}, idle_timeout_s=600)
    record = manager.launch("local/local/jl", local_info("jl"))
    try:
        wait_state(manager, "local/local/jl", "running", timeout_s=90)
        url = manager.view(record, with_url=True).url
        assert url and url.startswith(f"http://127.0.0.1:{record.port}/lab?token=")
        with urllib.request.urlopen(url, timeout=20) as answer:
            assert answer.status == 200 and "JupyterLab" in answer.read().decode()
        request = urllib.request.Request(f"http://127.0.0.1:{record.port}/api/status",
                                         headers={"Authorization": f"token {record.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert "last_activity" in json.load(answer)
        assert launcher.last_activity(record) is not None
        with pytest.raises(urllib.error.HTTPError):  # without the token: refused
            urllib.request.urlopen(f"http://127.0.0.1:{record.port}/api/sessions", timeout=10)
        # The kernel sees RAY_ADDRESS: the server's environment is what kernels inherit.
        environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
        assert b"RAY_ADDRESS=127.0.0.1:6390" in environ and not any(e.startswith(b"DMP_XRAY_TOKEN=") for e in environ)
    finally:
        manager.stop("local/local/jl")
    assert manager.view(record, with_url=False).state == "stopped"
    assert datetime.now(UTC) - datetime.fromisoformat(record.started_at) < timedelta(minutes=2)


def test_a_notebook_without_a_cluster_image_runs_the_cpu_pools_own_image():
    """The pod runs on the ``cpu`` pool: a pool that names its own image gets it, not the platform's."""
    from discord_ml_platform.spec import platform_config_from_yaml
    from discord_ml_platform.xray.notebook_pod import notebook_image

    config = platform_config_from_yaml(
        f"images:\n  cpu: {PLATFORM_CPU_IMAGE}\ncatalog:\n  types:\n    cpu: {{image: registry.example.com/ml/ray:pool}}\n")
    assert notebook_image(None, None, config) == "registry.example.com/ml/ray:pool"
    assert notebook_image(None, "registry.example.com/ml/ray:c", config) == "registry.example.com/ml/ray:c"
