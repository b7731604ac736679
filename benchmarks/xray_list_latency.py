"""Latency of X-Ray's list API with 1,000 clusters (goal: p95 under 300 ms).

The sandbox API server is filled with 1,000 RayCluster objects straight through the kubernetes
client (no operator: rendered manifests, half of them with a KubeRay-like ready status, across
four namespaces, several owners and GPU types, and some events). X-Ray runs under uvicorn on
loopback with the kuberay backend, and ``GET /api/clusters`` is timed over HTTP, first with the
listing cache off (every request lists the RayClusters and events from the API server), then
with the default 2 s cache (what concurrent browsers share)::

    python benchmarks/xray_list_latency.py --clusters 1000 --requests 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OWNERS = ("ada", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
GPU_TYPES = (("cpu", 0), ("t4", 1), ("a10g", 1), ("l4", 2), ("a100-80gb", 4), ("h100-80gb", 8))
NAMESPACES = ("ray", "ml-research", "ads", "ranking")


def populate(kubeconfig: Path, count: int) -> None:
    """Create ``count`` RayClusters (and one event per ten) directly through the API."""
    from kubernetes import client

    from discord_ml_platform.backends.kuberay import make_api_client
    from discord_ml_platform.spec import ClusterSpec, render_raycluster

    now = datetime.now(UTC)
    with make_api_client(str(kubeconfig)) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for ns in NAMESPACES:
            if ns not in ("ray",):
                core.create_namespace({"metadata": {"name": ns}})
        for i in range(count):
            gpu_type, gpus = GPU_TYPES[i % len(GPU_TYPES)]
            ns = NAMESPACES[i % len(NAMESPACES)]
            name = f"bench-{i:04d}"
            spec = ClusterSpec(name=name, namespace=ns, owner=OWNERS[i % len(OWNERS)], team=f"team-{i % 5}",
                               gpu_type=gpu_type, gpus_per_worker=gpus, workers=1 + i % 4,
                               run_id=f"run-{i:06d}" if i % 3 else None, memory_per_worker="8Gi")
            body = render_raycluster(spec, created_at=now)
            custom.create_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", body)
            if i % 2 == 0:
                status = {"state": "ready", "desiredWorkerReplicas": spec.workers, "readyWorkerReplicas": spec.workers,
                          "head": {"podIP": f"10.0.{i // 250}.{i % 250}", "serviceName": f"{name}-head-svc"},
                          "endpoints": {"dashboard": "8265", "gcs-server": "6379", "client": "10001"},
                          "conditions": [{"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady"},
                                         {"type": "RayClusterProvisioned", "status": "True",
                                          "reason": "AllPodRunningAndReadyFirstTime"}]}
                custom.patch_namespaced_custom_object_status("ray.io", "v1", ns, "rayclusters", name,
                                                             {"status": status})
            if i % 10 == 0:
                stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                core.create_namespaced_event(ns, {
                    "metadata": {"name": f"{name}.created", "namespace": ns},
                    "involvedObject": {"kind": "RayCluster", "name": name, "namespace": ns},
                    "reason": "Created", "message": f"Created head pod {name}-head", "type": "Normal",
                    "lastTimestamp": stamp, "firstTimestamp": stamp, "count": 1})


def start_api_server(root: Path) -> subprocess.Popen[str]:
    """The sandbox API server in its own process (as a real API server would be), kubeconfig in ``root``."""
    proc = subprocess.Popen([sys.executable, "-m", "discord_ml_platform.sandbox.apiserver", "--port", "0",
                             "--kubeconfig", str(root / "kubeconfig")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise RuntimeError(f"sandbox API server did not start: {line!r}")
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(url: str, requests: int, pause_s: float = 0.0) -> dict[str, float]:
    """Time ``requests`` sequential GETs (after two warm-ups), ``pause_s`` apart; milliseconds."""
    import httpx

    samples = []
    with httpx.Client(timeout=30) as http:
        for i in range(requests + 2):
            time.sleep(pause_s)
            started = time.perf_counter()
            response = http.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= 2:
                samples.append(elapsed)
        size = len(response.content)
        count = len(response.json()["clusters"])
    samples.sort()
    return {"clusters": count, "bytes": size, "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1), "max_ms": round(samples[-1], 1)}


def serve(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--goal-ms", type=float, default=300.0, help="p95 goal of the list as served")
    args = parser.parse_args()

    from discord_ml_platform.backends.kuberay import KubeRayBackend
    from discord_ml_platform.xray.app import create_app
    from discord_ml_platform.xray.settings import XRaySettings

    root = Path(tempfile.mkdtemp(prefix="dmpx-bench-", dir="/tmp"))
    results: dict[str, Any] = {}
    api_server = start_api_server(root)
    try:
        started = time.perf_counter()
        populate(root / "kubeconfig", args.clusters)
        results["populate_s"] = round(time.perf_counter() - started, 1)
        with KubeRayBackend(str(root / "kubeconfig")) as backend:
            started = time.perf_counter()
            backend.list()
            results["backend_list_ms"] = round((time.perf_counter() - started) * 1000, 1)
            # (label, cache TTL, pause between requests): "expired" makes every request find the
            # listing past its TTL, so each one is served stale while a background listing runs.
            scenarios = (("uncached", 0.0, 0.0), ("cached", 2.0, 0.0), ("expired", 0.25, 0.3))
            for label, ttl, pause in scenarios:
                settings = XRaySettings(state_dir=root / "state", cache_ttl_s=ttl)
                app = create_app(settings, {"kuberay": backend}, launchers={}, run_reaper=False)
                server, thread, base = serve(app)
                try:
                    results[label] = measure(f"{base}/api/clusters", args.requests, pause)
                    results[f"{label}_filtered"] = measure(f"{base}/api/clusters?owner=ada&gpu_type=a100-80gb",
                                                           max(5, args.requests // 4), pause)
                finally:
                    server.should_exit = True
                    thread.join(timeout=10)
                    app.state.xray.service.wait_idle()
    finally:
        api_server.terminate()
        api_server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
    results["goal_ms"] = args.goal_ms
    results["meets_goal"] = max(results["cached"]["p95_ms"], results["expired"]["p95_ms"]) < args.goal_ms
    print(json.dumps(results, indent=2))
    print(f"GET /api/clusters with {results['uncached']['clusters']} clusters: "
          f"uncached p50 {results['uncached']['p50_ms']} ms, p95 {results['uncached']['p95_ms']} ms; "
          f"served (2 s cache, stale-while-revalidate) p50 {results['cached']['p50_ms']} ms, "
          f"p95 {results['cached']['p95_ms']} ms; past its TTL p50 {results['expired']['p50_ms']} ms, "
          f"p95 {results['expired']['p95_ms']} ms "
          f"(goal p95 < {args.goal_ms:.0f} ms: {'met' if results['meets_goal'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
