"""Helpers shared by the sandbox tests: polling and object bodies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds.

    The sandbox applies deletions synchronously, so this returns on the first poll there; a real
    cluster's garbage collector and namespace controller need the polling.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


def client_from_kubeconfig(path: str | Path, context: str | None = None) -> client.ApiClient:
    """An ``ApiClient`` configured from a kubeconfig file, leaving the global default alone."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), context=context, client_configuration=cfg,
                            persist_config=False)
    return client.ApiClient(cfg)


def configmap(name: str, labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """A ConfigMap body."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}, **meta}, "data": {"k": "v"}}


def raycluster(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A minimal RayCluster that KubeRay's CRD schema accepts."""
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
                {"name": "ray-head", "image": "rayproject/ray:2.60.0-py311-cpu"}]}}},
        },
    }


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod no scheduler will pick up on a real cluster (so nothing else changes it)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"schedulerName": "dmp-no-such-scheduler",
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}
