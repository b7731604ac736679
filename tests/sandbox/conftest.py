"""Fixtures for the sandbox tests.

``kube`` is the contract fixture: each test using it runs against the sandbox and, when the
``KUBECONFIG`` environment variable is set, against that real cluster too, in a fresh namespace,
through the same official ``kubernetes`` client code path (a kubeconfig file, a fresh
``Configuration`` and ``ApiClient``; never the global default configuration).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from discord_ml_platform.sandbox.apiserver import ApiServer

from .helpers import client_from_kubeconfig

REAL_KUBECONFIG = os.environ.get("KUBECONFIG")


@dataclass
class Kube:
    """One API endpoint under test, with a fresh namespace."""

    api: client.ApiClient
    namespace: str
    server: ApiServer | None  # None for a real cluster
    has_ray: bool

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def is_sandbox(self) -> bool:
        return self.server is not None

    def require_ray(self) -> None:
        if not self.has_ray:
            pytest.skip("ray.io/v1 CRDs are not installed on this cluster")

    # Real clusters answer deletes asynchronously; poll with a generous timeout there.
    @property
    def gc_timeout(self) -> float:
        return 5.0 if self.is_sandbox else 90.0


def _has_ray(api: client.ApiClient) -> bool:
    groups = client.ApisApi(api).get_api_versions().groups
    return any(g.name == "ray.io" for g in groups)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[ApiServer]:
    """One sandbox for the session; tests isolate themselves with their own namespaces."""
    with ApiServer() as server:
        yield server


@pytest.fixture(scope="session")
def sandbox_kubeconfig(sandbox_server: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sandbox_server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(scope="session")
def sandbox_api(sandbox_kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = client_from_kubeconfig(sandbox_kubeconfig, context="dmp-sandbox")
    yield api
    api.close()


@pytest.fixture(scope="session")
def cluster_api() -> Iterator[client.ApiClient]:
    if not REAL_KUBECONFIG:
        pytest.skip("KUBECONFIG is not set: no real cluster to pin the contract against")
    api = client_from_kubeconfig(REAL_KUBECONFIG.split(os.pathsep)[0])
    yield api
    api.close()


@pytest.fixture(autouse=True)
def _clear_faults(sandbox_server: ApiServer) -> Iterator[None]:
    yield
    sandbox_server.faults.clear()


@pytest.fixture(params=["sandbox", "cluster"])
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    """The same test against the sandbox and (with ``KUBECONFIG``) a real cluster."""
    if request.param == "sandbox":
        api = request.getfixturevalue("sandbox_api")
        server = request.getfixturevalue("sandbox_server")
    else:
        api = request.getfixturevalue("cluster_api")
        server = None
    ns = f"dmp-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns, "labels": {"mlplatform.discord.com/test": "sandbox"}}})
    try:
        yield Kube(api=api, namespace=ns, server=server, has_ray=_has_ray(api))
    finally:
        try:
            core.delete_namespace(ns)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def sandbox(sandbox_server: ApiServer, sandbox_api: client.ApiClient) -> Iterator[Kube]:
    """Sandbox only (fault injection, internals), in a fresh namespace."""
    ns = f"dmp-test-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(sandbox_api).create_namespace({"metadata": {"name": ns}})
    yield Kube(api=sandbox_api, namespace=ns, server=sandbox_server, has_ray=True)
    sandbox_server.faults.clear()
    client.CoreV1Api(sandbox_api).delete_namespace(ns)
