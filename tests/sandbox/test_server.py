"""The server as a product: kubeconfig, CLI, persistence, auth hooks, discovery, extra types."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient

from discord_ml_platform.sandbox.apiserver import ApiServer
from discord_ml_platform.sandbox.auth import RbacAuthorizer, service_account_user

from .conftest import Kube
from .helpers import client_from_kubeconfig, configmap


def test_kubeconfig_file(sandbox_server: ApiServer, tmp_path: Path) -> None:
    path = sandbox_server.write_kubeconfig(tmp_path / "kc" / "config", namespace="ray")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["current-context"] == "dmp-sandbox"
    assert cfg["clusters"][0]["cluster"]["server"] == sandbox_server.url
    assert cfg["users"][0]["user"]["token"] == sandbox_server.token
    assert cfg["contexts"][0]["context"]["namespace"] == "ray"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    api = client_from_kubeconfig(path, context="dmp-sandbox")
    assert {"default", "kube-system", "ray"} <= {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    api.close()


def test_discovery_and_dynamic_client(sandbox: Kube) -> None:
    groups = {g.name for g in client.ApisApi(sandbox.api).get_api_versions().groups}
    assert {"ray.io", "apps", "rbac.authorization.k8s.io"} <= groups
    assert client.VersionApi(sandbox.api).get_code().major == "1"
    dyn = DynamicClient(sandbox.api)
    rayclusters = dyn.resources.get(api_version="ray.io/v1", kind="RayCluster")
    assert rayclusters.namespaced and rayclusters.subresources.get("status") is not None
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    assert pods.get(namespace=sandbox.namespace).items == []


def test_crd_registers_a_new_type(sandbox: Kube) -> None:
    ext = client.ApiextensionsV1Api(sandbox.api)
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    co = sandbox.custom
    co.create_namespaced_custom_object("example.com", "v1", sandbox.namespace, "widgets",
                                       {"apiVersion": "example.com/v1", "kind": "Widget",
                                        "metadata": {"name": "w"}, "spec": {"size": 1}})
    assert co.get_namespaced_custom_object("example.com", "v1", sandbox.namespace, "widgets", "w")["spec"] == {"size": 1}
    ext.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as err:
        co.list_namespaced_custom_object("example.com", "v1", sandbox.namespace, "widgets")
    assert err.value.status == 404


def test_unknown_resource_is_404(sandbox: Kube) -> None:
    with pytest.raises(ApiException) as err:
        sandbox.custom.list_namespaced_custom_object("nope.io", "v1", sandbox.namespace, "things")
    assert err.value.status == 404


def test_services_secrets_and_deployments(sandbox: Kube) -> None:
    svc = sandbox.core.create_namespaced_service(sandbox.namespace, {
        "metadata": {"name": "rc-head-svc"}, "spec": {"ports": [{"port": 8265}], "selector": {"a": "b"}}})
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.type == "ClusterIP"
    secret = sandbox.core.create_namespaced_secret(sandbox.namespace, {
        "metadata": {"name": "tok"}, "stringData": {"token": "abc"}})
    assert secret.data == {"token": "YWJj"} and secret.type == "Opaque"
    apps = client.AppsV1Api(sandbox.api)
    dep = apps.create_namespaced_deployment(sandbox.namespace, {
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert dep.metadata.generation == 1


def test_server_side_apply_creates_then_merges(sandbox: Kube) -> None:
    body = configmap("applied")
    got = sandbox.core.patch_namespaced_config_map("applied", sandbox.namespace, body, field_manager="dmp",
                                                   _content_type="application/apply-patch+yaml")
    assert got.data == {"k": "v"}
    got = sandbox.core.patch_namespaced_config_map("applied", sandbox.namespace, {"data": {"k": "w"}},
                                                   field_manager="dmp",
                                                   _content_type="application/apply-patch+yaml")
    assert got.data == {"k": "w"}


def test_dry_run_stores_nothing(sandbox: Kube) -> None:
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("dry"), dry_run="All")
    with pytest.raises(ApiException):
        sandbox.core.read_namespaced_config_map("dry", sandbox.namespace)


def test_token_required_gives_401() -> None:
    with ApiServer(require_token=True) as server:
        good = server.api_client()
        bad = server.api_client(token="wrong")
        assert client.CoreV1Api(good).list_namespace().items
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(bad).list_namespace()
        assert err.value.status == 401
        good.close()
        bad.close()


def test_rbac_authorizer_enforces_roles() -> None:
    with ApiServer() as server:
        admin = server.api_client()
        rbac = client.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role("ray", {"metadata": {"name": "raycluster-editor"}, "rules": [
            {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list", "create"]}]})
        rbac.create_namespaced_role_binding("ray", {
            "metadata": {"name": "dmp-editor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "raycluster-editor"},
            "subjects": [{"kind": "ServiceAccount", "name": "dmp", "namespace": "ray"}]})
        server.authorizer = RbacAuthorizer(server.store, users={"sa-token": service_account_user("ray", "dmp")},
                                           admin_tokens=[server.token])
        sa = client.CustomObjectsApi(server.api_client(token="sa-token"))
        assert sa.list_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters")["items"] == []
        for call in (lambda: sa.delete_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", "x"),
                     lambda: sa.list_namespaced_custom_object("ray.io", "v1", "default", "rayclusters"),
                     lambda: client.CoreV1Api(sa.api_client).list_namespaced_secret("ray")):
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403
        assert client.CoreV1Api(admin).list_namespaced_secret("ray").items == []
        admin.close()
        sa.api_client.close()


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with ApiServer(state_file=state, namespaces=["default", "team-a"]) as server:
        api = server.api_client()
        client.CoreV1Api(api).create_namespaced_config_map("team-a", configmap("kept"))
        api.close()
    with ApiServer(state_file=state) as server:
        api = server.api_client()
        core = client.CoreV1Api(api)
        kept = core.read_namespaced_config_map("kept", "team-a")
        assert kept.data == {"k": "v"}
        assert int(core.list_namespace().metadata.resource_version) >= int(kept.metadata.resource_version)
        api.close()


def test_cli_serves_in_foreground_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "discord_ml_platform.sandbox.apiserver", "--port", "0",
         "--kubeconfig", str(kubeconfig), "--namespaces", "default,ml"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready at http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
        api = client_from_kubeconfig(kubeconfig, context="dmp-sandbox")
        names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        assert names == {"default", "ml"}
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
