"""Every manifest and values file in deploy/ parses and every reference in it resolves."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from discord_ml_platform.spec import ClusterSpec, PolicyViolation, platform_config_from_yaml, render_raycluster
from discord_ml_platform.spec.labels import MANAGED_BY, MANAGED_BY_VALUE
from discord_ml_platform.spec.render_pod import HEAD_PORTS

from .deploy_files import (
    DEPLOY,
    DOCKER,
    DOCS,
    NAMESPACED_KINDS,
    PLATFORM_CONFIG,
    ROOT,
    env_of,
    find,
    helm_values,
    k8s_run_launcher_values,
    kustomization,
    kustomize_objects,
    load_docs,
    of_kind,
    parse_dockerfile,
    pyproject,
    user_deployment,
)

sys.path.insert(0, str(ROOT / "tests" / "spec"))
from kuberay_crd_schema import manifest_problems

pytestmark = pytest.mark.timeout(120)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RAY_CLIENT_LABEL = "mlplatform.discord.com/ray-client"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return kustomize_objects()


@pytest.fixture(scope="module")
def platform():
    return platform_config_from_yaml(PLATFORM_CONFIG.read_text())


def ray_images() -> tuple[str, str]:
    env = env_of(user_deployment()["env"])
    return env["DMP_RAY_IMAGE"], env["DMP_RAY_GPU_IMAGE"]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and matchExpressions (In, NotIn, Exists)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}  # set by the API server on every namespace


# --- parsing -------------------------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path} is empty"
        if path.parent.name == "manifests":
            for doc in docs:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: {doc.get('kind')}"
                assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


def test_kustomization_lists_every_manifest_file() -> None:
    listed = {Path(r) for r in kustomization()["resources"]}
    on_disk = {p.relative_to(DEPLOY) for p in (DEPLOY / "manifests").glob("*.yaml")}
    assert listed == on_disk


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_renders_what_the_tests_check(objects) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]

    def key(o: dict[str, Any]) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    assert sorted(map(key, rendered)) == sorted(map(key, objects))
    by_key = {key(o): o for o in objects}
    for obj in rendered:
        assert obj == by_key[key(obj)], key(obj)


def test_namespaced_objects_are_in_the_platform_namespaces(objects) -> None:
    namespaces = {o["metadata"]["name"] for o in of_kind(objects, "Namespace")}
    assert namespaces == {"dagster", "ray", "dmp-system"}
    for obj in objects:
        if obj["kind"] in NAMESPACED_KINDS:
            assert obj["metadata"].get("namespace") in namespaces, obj["metadata"]
        else:
            assert "namespace" not in obj["metadata"], obj["metadata"]
    assert k8s_run_launcher_values()["jobNamespace"] == "dagster"


# --- references ----------------------------------------------------------------------------------


def test_bindings_reference_existing_roles_and_service_accounts(objects) -> None:
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert find(objects, ref["kind"], ref["name"], ns), f"{binding['metadata']['name']}: no {ref}"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert find(objects, "ServiceAccount", subject["name"], subject["namespace"]), subject


def test_run_pods_and_code_server_use_the_service_account_bound_to_the_run_role(objects) -> None:
    values = helm_values()
    account = values["dagster-user-deployments"]["serviceAccount"]
    assert account == {"create": False, "name": "dmp-run"}
    assert k8s_run_launcher_values()["runK8sConfig"]["podSpecConfig"]["serviceAccountName"] == "dmp-run"
    assert find(objects, "ServiceAccount", "dmp-run", "dagster")
    [binding] = [b for b in of_kind(objects, "RoleBinding")
                 if {"kind": "ServiceAccount", "name": "dmp-run", "namespace": "dagster"} in b["subjects"]]
    assert binding["metadata"]["namespace"] == "ray" and binding["roleRef"]["name"] == "dmp-run-rayclusters"


def test_ray_pods_service_account_exists_without_token_or_rights(objects, platform) -> None:
    account = platform.policy.service_account
    assert account == "ray-workload"
    sa = find(objects, "ServiceAccount", account, "ray")
    assert sa and sa["automountServiceAccountToken"] is False
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        assert all(s["name"] != account for s in binding["subjects"]), binding["metadata"]["name"]
    spec = ClusterSpec(name="sa-check", image=ray_images()[0])
    template = render_raycluster(spec, catalog=platform.catalog, policy=platform.policy,
                                 created_at=NOW)["spec"]["headGroupSpec"]["template"]["spec"]
    assert template["serviceAccountName"] == account and template["automountServiceAccountToken"] is False


def test_xray_deployment_references_resolve(objects) -> None:
    deployment = find(objects, "Deployment", "dmp-xray", "dmp-system")
    assert deployment is not None
    pod = deployment["spec"]["template"]
    assert matches(deployment["spec"]["selector"], pod["metadata"]["labels"])
    assert find(objects, "ServiceAccount", pod["spec"]["serviceAccountName"], "dmp-system")
    [container] = pod["spec"]["containers"]
    assert container["command"] == ["dmp", "xray", "--host", "0.0.0.0", "--port", "8080", "--namespace", "ray"]
    assert container["ports"][0]["containerPort"] == 8080
    env = env_of(container["env"])
    assert env["DMP_BACKEND"] == "kuberay"
    assert env["DMP_XRAY_TOKEN"] == {"secretKeyRef": {"name": "dmp-xray-token", "key": "token"}}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    config_map = volumes["platform-config"]["configMap"]["name"]
    assert find(objects, "ConfigMap", config_map, "dmp-system")
    assert env["DMP_PLATFORM_CONFIG"].startswith(next(m["mountPath"] for m in container["volumeMounts"]
                                                      if m["name"] == "platform-config"))
    service = find(objects, "Service", "dmp-xray", "dmp-system")
    assert service and matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}


def test_code_location_mounts_the_platform_config_configmap(objects) -> None:
    deployment = user_deployment()
    env = env_of(deployment["env"])
    [volume] = deployment["volumes"]
    [mount] = deployment["volumeMounts"]
    assert mount["name"] == volume["name"] and env["DMP_PLATFORM_CONFIG"].startswith(mount["mountPath"] + "/")
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"], "dagster")
    assert config_map is not None
    assert Path(env["DMP_PLATFORM_CONFIG"]).name in config_map["data"]
    assert env["DMP_BACKEND"] == "kuberay" and env["DMP_NAMESPACE"] == "ray"
    assert deployment["dagsterApiGrpcArgs"][-1] == pyproject()["tool"]["dagster"]["module_name"]


def test_secrets_the_deployment_needs_are_created_in_the_guide(objects) -> None:
    guide = DOCS.read_text()
    needed = {("dmp-system", "dmp-xray-token", "token"),
              ("dagster", helm_values()["global"]["postgresqlSecretName"], "postgresql-password")}
    for ns, name, key in needed:
        assert re.search(rf"kubectl -n {ns} create secret generic {name}\s+\\?\s*--from-literal={key}=", guide), \
            (ns, name, key)


# --- images --------------------------------------------------------------------------------------


def test_images_match_the_dockerfiles_and_the_package_version(objects, platform) -> None:
    version = pyproject()["project"]["version"]
    code_title = "dmp-code-location"
    image = user_deployment()["image"]
    assert image["repository"].rsplit("/", 1)[1] == code_title and image["tag"] == version
    assert 'title="dmp-code-location"' in " ".join(parse_dockerfile(DOCKER / "code-location.Dockerfile").final.all("LABEL"))
    xray = find(objects, "Deployment", "dmp-xray", "dmp-system")["spec"]["template"]["spec"]["containers"][0]
    assert xray["image"] == f"{image['repository']}:{image['tag']}"
    cpu, gpu = ray_images()
    registry = image["repository"].rsplit("/", 1)[0]
    assert cpu == f"{registry}/dmp-ray:{version}-cpu" and gpu == f"{registry}/dmp-ray:{version}-gpu"
    assert all(i.startswith(platform.policy.allowed_image_prefixes) for i in (cpu, gpu))


def test_pod_security_contexts_match_the_image_users(objects) -> None:
    uid, gid = (int(x) for x in parse_dockerfile(DOCKER / "code-location.Dockerfile").final.all("USER")[-1].split(":"))
    contexts = [
        user_deployment()["podSecurityContext"],
        k8s_run_launcher_values()["runK8sConfig"]["podSpecConfig"]["securityContext"],
        find(objects, "Deployment", "dmp-xray", "dmp-system")["spec"]["template"]["spec"]["securityContext"],
    ]
    for ctx in contexts:
        assert ctx["runAsNonRoot"] is True and (ctx["runAsUser"], ctx["runAsGroup"]) == (uid, gid)


# --- Ray clusters and the NetworkPolicy ----------------------------------------------------------


def rendered_clusters(platform) -> list[dict[str, Any]]:
    cpu, gpu = ray_images()
    specs = [
        ClusterSpec(name="deploy-head-only", namespace="ray", image=cpu, owner="ada", run_id="run-1"),
        ClusterSpec(name="deploy-cpu-workers", namespace="ray", image=cpu, workers=2, cpus_per_worker=2,
                    memory_per_worker="8Gi"),
        ClusterSpec(name="deploy-gpu", namespace="ray", image=gpu, gpu_type="a100-80gb", workers=2,
                    gpus_per_worker=8),
        ClusterSpec(name="deploy-autoscale", namespace="ray", image=gpu, gpu_type="h100-80gb", workers=1,
                    min_workers=0, max_workers=4, gpus_per_worker=2),
    ]
    return [render_raycluster(s, catalog=platform.catalog, policy=platform.policy, created_at=NOW) for s in specs]


def test_rendered_rayclusters_pass_the_kuberay_crd_schema(platform) -> None:
    for manifest in rendered_clusters(platform):
        assert manifest_problems(manifest) == [], manifest["metadata"]["name"]


def test_platform_policy_only_admits_the_platform_images_and_namespace(platform) -> None:
    with pytest.raises(PolicyViolation, match="image"):
        render_raycluster(ClusterSpec(name="x"), catalog=platform.catalog, policy=platform.policy, created_at=NOW)
    with pytest.raises(PolicyViolation, match="namespace"):
        render_raycluster(ClusterSpec(name="x", namespace="default", image=ray_images()[0]),
                          catalog=platform.catalog, policy=platform.policy, created_at=NOW)


def pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    return [spec["headGroupSpec"]["template"], *(g["template"] for g in spec.get("workerGroupSpecs", []))]


def test_network_policy_selects_every_rendered_ray_pod(objects, platform) -> None:
    policy = find(objects, "NetworkPolicy", "ray-pods", "ray")
    assert policy["spec"]["podSelector"] == {"matchLabels": {MANAGED_BY: MANAGED_BY_VALUE}}
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for manifest in rendered_clusters(platform):
        for template in pod_templates(manifest):
            assert matches(policy["spec"]["podSelector"], template["metadata"]["labels"])


def allowed_ports(policy: dict[str, Any], namespace: str, labels: dict[str, str]) -> set[int] | None:
    """Ports of the ingress rules that admit a pod (None: every port)."""
    ports: set[int] = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            ns_ok = ("namespaceSelector" in peer and matches(peer["namespaceSelector"], namespace_labels(namespace))) \
                or ("namespaceSelector" not in peer and namespace == policy["metadata"]["namespace"])
            pod_ok = "podSelector" not in peer or matches(peer["podSelector"], labels)
            if ns_ok and pod_ok:
                if "ports" not in rule:
                    return None
                ports |= {p["port"] for p in rule["ports"]}
    return ports


def test_run_pods_and_xray_reach_the_dashboard_and_client_ports_and_nothing_else_does(objects, platform) -> None:
    policy = find(objects, "NetworkPolicy", "ray-pods", "ray")
    head_ports = dict(HEAD_PORTS)
    wanted = {head_ports["dashboard"], head_ports["client"]}
    run_labels = {**k8s_run_launcher_values()["runK8sConfig"]["podTemplateSpecMetadata"]["labels"],
                  "app.kubernetes.io/component": "run_worker"}
    code_labels = user_deployment()["labels"]
    xray_labels = find(objects, "Deployment", "dmp-xray", "dmp-system")["spec"]["template"]["metadata"]["labels"]
    assert run_labels[RAY_CLIENT_LABEL] == code_labels[RAY_CLIENT_LABEL] == xray_labels[RAY_CLIENT_LABEL] == "true"
    assert allowed_ports(policy, "dagster", run_labels) == wanted
    assert allowed_ports(policy, "dmp-system", xray_labels) == wanted
    assert allowed_ports(policy, "dagster", {"app": "something-else"}) == set()
    assert allowed_ports(policy, "default", run_labels) == set()
    ray_pod = pod_templates(rendered_clusters(platform)[1])[1]["metadata"]["labels"]
    assert allowed_ports(policy, "ray", ray_pod) is None  # Ray pods talk to each other on every port
    assert allowed_ports(policy, "kuberay-system", {}) == {head_ports["dashboard"]}


# --- X-Ray: allowed hosts, NetworkPolicy, namespace-scoped RBAC ---------------------------------

XRAY_CLIENT_LABEL = "mlplatform.discord.com/xray-client"


def xray_pod(objects) -> dict[str, Any]:
    return find(objects, "Deployment", "dmp-xray", "dmp-system")["spec"]["template"]


def policies_for(objects, namespace: str, labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    """The NetworkPolicies that isolate a pod for ``direction`` (Ingress or Egress)."""
    return [p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["namespace"] == namespace
            and matches(p["spec"]["podSelector"], labels) and direction in p["spec"]["policyTypes"]]


def peer_admits(peer: dict[str, Any], own_namespace: str, namespace: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # pods are never addressed by an ipBlock here
    ns_ok = matches(peer["namespaceSelector"], namespace_labels(namespace)) if "namespaceSelector" in peer \
        else namespace == own_namespace
    return ns_ok and ("podSelector" not in peer or matches(peer["podSelector"], labels))


def reachable_ports(policies: list[dict[str, Any]], key: str, namespace: str, labels: dict[str, str]) -> set[int]:
    """Ports the union of ``policies`` opens to (``key`` "ingress") or from ("egress") a pod."""
    ports: set[int] = set()
    for policy in policies:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get("from" if key == "ingress" else "to") or []
            if any(peer_admits(peer, policy["metadata"]["namespace"], namespace, labels) for peer in peers):
                ports |= {p["port"] for p in rule.get("ports") or [{"port": -1}]}
    return ports


def test_xray_namespace_denies_by_default(objects) -> None:
    [deny] = [p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["namespace"] == "dmp-system"
              and p["spec"]["podSelector"] == {}]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")


def test_xray_admits_http_only_from_its_labelled_clients(objects, platform) -> None:
    pod = xray_pod(objects)
    labels = pod["metadata"]["labels"]
    ingress = policies_for(objects, "dmp-system", labels, "Ingress")
    assert ingress, "no NetworkPolicy isolates X-Ray"
    http = {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http"}
    assert http == {8080}
    assert reachable_ports(ingress, "ingress", "ingress-nginx", {XRAY_CLIENT_LABEL: "true"}) == http
    assert reachable_ports(ingress, "ingress", "dmp-system", {XRAY_CLIENT_LABEL: "true"}) == http
    run_labels = {**k8s_run_launcher_values()["runK8sConfig"]["podTemplateSpecMetadata"]["labels"],
                  "app.kubernetes.io/component": "run_worker"}
    ray_pod = pod_templates(rendered_clusters(platform)[1])[1]["metadata"]["labels"]
    for namespace, other in (("dagster", run_labels), ("ray", ray_pod), ("dmp-system", labels),
                             ("default", {}), ("kube-system", {"k8s-app": "kube-dns"})):
        assert reachable_ports(ingress, "ingress", namespace, other) == set(), (namespace, other)
    # The Service sends its traffic to that port.
    service = find(objects, "Service", "dmp-xray", "dmp-system")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}


def test_xray_reaches_dns_the_api_and_ray_dashboards_only(objects, platform) -> None:
    labels = xray_pod(objects)["metadata"]["labels"]
    egress = policies_for(objects, "dmp-system", labels, "Egress")
    assert egress
    head = pod_templates(rendered_clusters(platform)[0])[0]["metadata"]["labels"]
    assert reachable_ports(egress, "egress", "ray", head) == {dict(HEAD_PORTS)["dashboard"]}
    assert reachable_ports(egress, "egress", "kube-system", {"k8s-app": "kube-dns"}) == {53}
    assert reachable_ports(egress, "egress", "dagster", {"app.kubernetes.io/component": "run_worker"}) == set()
    api = [r for p in egress for r in p["spec"].get("egress") or [] if any("ipBlock" in peer for peer in r["to"])]
    assert {port["port"] for r in api for port in r["ports"]} == {443, 6443}
    # ... and the Ray pods' policy lets it in on that port.
    assert dict(HEAD_PORTS)["dashboard"] in allowed_ports(find(objects, "NetworkPolicy", "ray-pods", "ray"),
                                                          "dmp-system", labels)


def test_xray_answers_only_its_allowed_hosts(objects) -> None:
    from discord_ml_platform.xray.settings import parse_allowed_hosts

    container = xray_pod(objects)["spec"]["containers"][0]
    hosts = parse_allowed_hosts(env_of(container["env"])["DMP_XRAY_ALLOWED_HOSTS"])
    service = find(objects, "Service", "dmp-xray", "dmp-system")
    name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
    assert {f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local", "localhost"} <= set(hosts)
    assert not any(h.startswith("*") for h in hosts)
    assert "--host" in container["command"]  # listens beyond loopback: the allowed hosts are required


def test_xray_reads_pods_only_in_the_ray_namespace(objects) -> None:
    subject = {"kind": "ServiceAccount", "name": "dmp-xray", "namespace": "dmp-system"}
    assert not [b for b in of_kind(objects, "ClusterRoleBinding") if subject in b["subjects"]]
    assert not [r for r in of_kind(objects, "ClusterRole") if r["metadata"]["name"].startswith("dmp-xray")]
    bindings = [b for b in of_kind(objects, "RoleBinding") if subject in b["subjects"]]
    assert {(b["metadata"]["namespace"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings} == {
        ("ray", "Role", "dmp-xray-read"), ("ray", "Role", "dmp-xray-delete")}
    read = find(objects, "Role", "dmp-xray-read", "ray")
    assert all(set(rule["verbs"]) <= {"get", "list"} for rule in read["rules"])
    command = xray_pod(objects)["spec"]["containers"][0]["command"]
    assert command[command.index("--namespace") + 1] == "ray"  # X-Ray lists only where it may
