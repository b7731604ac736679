"""The shipped RBAC is sufficient and minimal: KubeRayBackend against an RBAC-enforcing sandbox.

The Roles, ClusterRoles, bindings, namespaces and service accounts of deploy/ are applied to the
sandbox API server (with the admin token, as ``kubectl apply -k deploy/`` would), then the server
authorizes every request with :class:`RbacAuthorizer` and records what each service account's
token asked for. The run pods' token drives create, wait_ready, list and delete; the Role's
grants must equal the (verb, group, resource) tuples the backend actually issued.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discord_ml_platform.backends import ClusterError, HeadFailedError
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_retry import RetryPolicy
from discord_ml_platform.sandbox.auth import RbacAuthorizer, service_account_user
from discord_ml_platform.spec import ClusterSpec, platform_config_from_yaml
from discord_ml_platform.spec.labels import RUN_ID

from .deploy_files import PLATFORM_CONFIG, env_of, find, kustomize_objects, of_kind, user_deployment

pytestmark = [pytest.mark.ray]

RUN_TOKEN, XRAY_TOKEN, WORKLOAD_TOKEN = "run-pod-token", "xray-token", "ray-workload-token"
USERS = {
    RUN_TOKEN: service_account_user("dagster", "dmp-run"),
    XRAY_TOKEN: service_account_user("dmp-system", "dmp-xray"),
    WORKLOAD_TOKEN: service_account_user("ray", "ray-workload"),
}
APPLIED_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
QUICK = RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.5, deadline_s=20)
Call = tuple[str, str, str, str | None, bool]  # verb, group, resource, namespace, allowed


class RecordingAuthorizer:
    """Delegates to RBAC and records every decision per token."""

    def __init__(self, inner: RbacAuthorizer) -> None:
        self.inner = inner
        self.calls: dict[str, list[Call]] = {token: [] for token in USERS}

    def __call__(self, token: str | None, verb: str, group: str, resource: str,
                 namespace: str | None, name: str | None) -> bool:
        allowed = self.inner(token, verb, group, resource, namespace, name)
        if token in self.calls:
            self.calls[token].append((verb, group, resource, namespace, allowed))
        return allowed


def apply(api_client: Any, objects: list[dict[str, Any]]) -> None:
    """``kubectl apply`` of the RBAC-related objects, in dependency order (existing namespaces kept)."""
    from kubernetes import utils
    from kubernetes.utils import FailToCreateError

    for kind in APPLIED_KINDS:
        for obj in of_kind(objects, kind):
            try:
                utils.create_from_dict(api_client, obj)
            except FailToCreateError as err:
                if not all(e.status == 409 and kind == "Namespace" for e in err.api_exceptions):
                    raise


@pytest.fixture(scope="module")
def platform():
    return platform_config_from_yaml(PLATFORM_CONFIG.read_text())


@pytest.fixture(scope="module")
def sandbox(session_root: Path) -> Iterator[Any]:
    from discord_ml_platform.sandbox.runner import KubeRaySandbox

    temp_root = session_root / "r" / "d"  # short: Ray's socket paths live below it
    temp_root.mkdir(parents=True, exist_ok=True)
    with KubeRaySandbox(session_root / "rbac-sandbox", temp_root=temp_root) as box:
        admin = box.server.api_client()
        try:
            apply(admin, kustomize_objects())
        finally:
            admin.close()
        # From here on every request is authorized by the stored RBAC objects; the operator keeps
        # the server's own (admin) token, as KubeRay has its own ClusterRole.
        box.server.authorizer = RecordingAuthorizer(
            RbacAuthorizer(box.server.store, USERS, admin_tokens=[box.server.token]))
        yield box


@pytest.fixture
def auth(sandbox) -> Iterator[RecordingAuthorizer]:
    """The recorder, emptied; the module's sandbox gets its faults cleared after each test."""
    recorder: RecordingAuthorizer = sandbox.server.authorizer
    for calls in recorder.calls.values():
        calls.clear()
    try:
        yield recorder
    finally:
        sandbox.faults.clear()


def backend_for(sandbox: Any, token: str, platform, namespace: str | None = "ray") -> KubeRayBackend:
    return KubeRayBackend(api_client=sandbox.server.api_client(token), namespace=namespace,
                          platform_config=platform, retry=QUICK)


def role_grants(kind: str, name: str, namespace: str | None) -> set[tuple[str, str, str]]:
    role = find(kustomize_objects(), kind, name, namespace)
    assert role is not None, (kind, name, namespace)
    return {(verb, group, resource) for rule in role["rules"]
            for verb, group, resource in itertools.product(rule["verbs"], rule["apiGroups"], rule["resources"])}


def spec(name: str, run_id: str) -> ClusterSpec:
    image = env_of(user_deployment()["env"])["DMP_RAY_IMAGE"]
    return ClusterSpec(name=name, namespace="ray", image=image, head_memory="1Gi", run_id=run_id, owner="rbac-test")


@pytest.mark.timeout(240)
def test_run_role_is_enough_for_the_whole_cluster_lifecycle_and_grants_nothing_unused(sandbox, auth, platform):
    backend = backend_for(sandbox, RUN_TOKEN, platform)
    cluster = spec("rbac-run", "run-rbac-1")
    handle = backend.create(cluster)
    try:
        assert backend.create(cluster) == handle  # idempotent: 409, then get
        endpoints = backend.wait_ready(handle, 180)
        assert endpoints.dashboard_url
        [info] = backend.list({RUN_ID: "run-rbac-1"})
        assert info.handle == handle and info.status == "ready"
    finally:
        backend.delete(handle, timeout_s=90)
        backend.close()
    assert backend_for(sandbox, RUN_TOKEN, platform).list({RUN_ID: "run-rbac-1"}) == []
    # A head that crashes: the wait fails with the head's last log lines, read with the run's token.
    backend = backend_for(sandbox, RUN_TOKEN, platform)
    crashing = None
    try:
        sandbox.faults.operator.head_failure = "error"
        crashing = backend.create(spec("rbac-crash", "run-rbac-2"))
        with pytest.raises(HeadFailedError) as failed:
            backend.wait_ready(crashing, 60)
        assert failed.value.log_tail.strip(), str(failed.value)
    finally:
        sandbox.faults.operator.head_failure = ""
        if crashing is not None:
            backend.delete(crashing, timeout_s=90)
        backend.close()
    calls = auth.calls[RUN_TOKEN]
    denied = [c for c in calls if not c[4]]
    assert not denied, f"the run Role is missing: {denied}"
    assert {c[3] for c in calls} == {"ray"}, "the run pods touched another namespace"
    used = {(verb, group, resource) for verb, group, resource, _, _ in calls}
    granted = role_grants("Role", "dmp-run-rayclusters", "ray")
    assert granted == used, f"granted but unused: {granted - used}; used but not granted: {used - granted}"


@pytest.mark.timeout(60)
def test_run_token_is_forbidden_everything_else(sandbox, auth, platform):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = sandbox.server.api_client(RUN_TOKEN)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    forbidden = [
        lambda: core.delete_namespaced_pod("any-pod", "ray"),
        lambda: core.list_namespaced_secret("ray"),
        lambda: core.list_namespaced_service("ray"),
        lambda: core.create_namespaced_pod("ray", {"metadata": {"name": "p"}, "spec": {"containers": []}}),
        lambda: custom.patch_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", "x", {"metadata": {}}),
        lambda: custom.list_namespaced_custom_object("ray.io", "v1", "ray", "rayjobs"),
        lambda: custom.list_namespaced_custom_object("ray.io", "v1", "default", "rayclusters"),
        lambda: custom.create_namespaced_custom_object("ray.io", "v1", "default", "rayclusters",
                                                       {"metadata": {"name": "x"}}),
        lambda: custom.list_cluster_custom_object("ray.io", "v1", "rayclusters"),
    ]
    try:
        for call in forbidden:
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403
    finally:
        api.close()
    # A backend without a namespace lists cluster-wide: the run pods must be given DMP_NAMESPACE.
    with pytest.raises(ClusterError, match="403"):
        backend_for(sandbox, RUN_TOKEN, platform, namespace=None).list()
    assert not any(allowed for *_, allowed in auth.calls[RUN_TOKEN])


@pytest.mark.timeout(60)
def test_ray_workload_service_account_may_do_nothing(sandbox, auth):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = sandbox.server.api_client(WORKLOAD_TOKEN)
    try:
        for call in (lambda: client.CoreV1Api(api).list_namespaced_pod("ray"),
                     lambda: client.CustomObjectsApi(api).list_namespaced_custom_object("ray.io", "v1", "ray",
                                                                                       "rayclusters"),
                     lambda: client.CoreV1Api(api).list_namespaced_event("ray")):
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403
    finally:
        api.close()


@pytest.mark.timeout(300)
def test_xray_lists_reads_logs_and_deletes_in_the_ray_namespace_only(sandbox, auth, platform):
    """X-Ray's Role (namespace ``ray``) is enough for what the dashboard does there: list clusters,
    read a cluster's log (head pod's, else the newest job's) and delete; it grants nothing unused."""
    from discord_ml_platform.jobs import job_client, submit_job, wait_for_job
    from discord_ml_platform.xray.details import tail_logs

    admin = KubeRayBackend(api_client=sandbox.server.api_client(), namespace="ray", platform_config=platform,
                           retry=QUICK)
    xray = backend_for(sandbox, XRAY_TOKEN, platform, namespace="ray")  # `dmp xray --namespace ray`
    handle = admin.create(spec("rbac-xray", "run-rbac-2"))
    try:
        endpoints = admin.wait_ready(handle, 180)
        jobs = job_client(endpoints.dashboard_url)
        job_id = submit_job(jobs, "echo rbac-xray-log-line", entrypoint_num_cpus=0)
        assert wait_for_job(jobs, job_id, timeout_s=120).succeeded
        auth.calls[XRAY_TOKEN].clear()
        [info] = xray.list({RUN_ID: "run-rbac-2"})  # RayClusters, then events, in ray
        assert info.handle == handle
        logs = tail_logs(xray, info, 50)
        assert logs.error is None and logs.lines, logs
        assert logs.source.startswith("pod "), logs  # the head pod's log, through pods/log
        with pytest.raises(ClusterError, match="403"):
            xray.create(spec("rbac-xray-2", "run-rbac-3"))
        xray.delete(handle, timeout_s=90)
    finally:
        admin.delete(handle, timeout_s=90)
        admin.close()
        xray.close()
    calls = auth.calls[XRAY_TOKEN]
    assert [c for c in calls if not c[4]] == [("create", "ray.io", "rayclusters", "ray", False)]
    assert {c[3] for c in calls} == {"ray"}, "X-Ray touched another namespace"
    for call in (("list", "ray.io", "rayclusters"), ("list", "", "events"), ("list", "", "pods"),
                 ("delete", "ray.io", "rayclusters"), ("get", "ray.io", "rayclusters")):
        assert (*call, "ray", True) in calls, call
    assert ("get", "", "pods/log", "ray", True) in calls  # the sandbox serves pods/log
    assert len(logs.lines) > 1 and not logs.lines[0].startswith(("b'", 'b"'))  # lines, not a bytes repr
    used = {(verb, group, resource) for verb, group, resource, _, allowed in calls if allowed}
    granted = role_grants("Role", "dmp-xray-read", "ray") | role_grants("Role", "dmp-xray-delete", "ray")
    assert granted == used, f"granted but unused: {granted - used}; used but not granted: {used - granted}"
    # Deleting is granted only by the separately bound Role.
    assert role_grants("Role", "dmp-xray-delete", "ray") == {("delete", "ray.io", "rayclusters")}
    assert all(verb in ("get", "list") for verb, _, _ in role_grants("Role", "dmp-xray-read", "ray"))


@pytest.mark.timeout(60)
def test_xray_token_is_forbidden_outside_the_ray_namespace(sandbox, auth, platform):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac: RbacAuthorizer = auth.inner
    assert rbac(XRAY_TOKEN, "get", "", "pods/log", "ray", "any-head")  # the head pod's log, in ray
    api = sandbox.server.api_client(XRAY_TOKEN)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    forbidden = [
        lambda: core.list_pod_for_all_namespaces(),
        lambda: core.list_namespaced_pod("dagster"),
        lambda: core.list_namespaced_pod("dmp-system"),
        lambda: core.list_namespaced_event("default"),
        lambda: core.list_namespaced_secret("ray"),
        lambda: core.read_namespaced_pod_log("any-pod", "dagster"),
        lambda: core.delete_namespaced_pod("any-pod", "ray"),
        lambda: custom.list_cluster_custom_object("ray.io", "v1", "rayclusters"),
        lambda: custom.list_namespaced_custom_object("ray.io", "v1", "default", "rayclusters"),
        lambda: custom.delete_namespaced_custom_object("ray.io", "v1", "default", "rayclusters", "x"),
        lambda: custom.patch_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", "x", {"metadata": {}}),
    ]
    try:
        for call in forbidden:
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403
    finally:
        api.close()
    for namespace in ("dagster", "dmp-system", "default", "kube-system"):
        assert not rbac(XRAY_TOKEN, "get", "", "pods/log", namespace, "any-pod"), namespace
        assert not rbac(XRAY_TOKEN, "list", "", "pods", namespace, None), namespace
    # Without --namespace the backend lists cluster-wide, which the Role does not allow.
    with pytest.raises(ClusterError, match="403"):
        backend_for(sandbox, XRAY_TOKEN, platform, namespace=None).list()
    assert not any(allowed for *_, allowed in auth.calls[XRAY_TOKEN])
