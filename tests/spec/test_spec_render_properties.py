"""Properties every rendered manifest has, over the golden cases and seeded random specs."""

from __future__ import annotations

import builtins
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from kuberay_crd_schema import manifest_problems
from spec_cases import CASES, CREATED_AT, JOB_SPEC_FIELDS

from discord_ml_platform.spec import DEFAULT_CATALOG, ClusterSpec, render_manifests, render_raycluster, render_rayjob
from discord_ml_platform.spec.labels import OWNER, is_valid_label_value
from discord_ml_platform.spec.policy import SecurityPolicy, _valid_label_key
from discord_ml_platform.spec.quantities import quantity_to_bytes

Manifest = dict[str, Any]


def random_spec(rng: random.Random, index: int) -> ClusterSpec:
    gpu = rng.choice(DEFAULT_CATALOG.names())
    gpu_type = DEFAULT_CATALOG.get(gpu)
    workers = rng.randint(0, 6)
    fields: dict[str, Any] = {"name": f"fuzz-{index}", "gpu_type": gpu, "workers": workers, "owner": random_owner(rng)}
    if gpu_type.has_gpus:
        fields["gpus_per_worker"] = rng.choice([1, 2, 4, 8])
    if rng.random() < 0.4:
        fields["min_workers"] = rng.randint(0, workers)
        fields["max_workers"] = workers + rng.randint(0, 3)
    if rng.random() < 0.3:
        fields["head_cpus"] = rng.choice([0.5, 1, 2.5, 8])
    if rng.random() < 0.3:
        fields["run_id"] = f"{rng.getrandbits(64):016x}"
    return ClusterSpec(**fields)


def random_owner(rng: random.Random) -> str:
    alphabet = "abcXYZ019 _-.@<>/\\:;,!?()[]{}'\"éüß漢字🙂\t\n" + "-" * 5 + "." * 5
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))


def pod_specs(node: Any) -> Iterator[Manifest]:
    """Every pod spec (a mapping with ``containers``) anywhere in a manifest."""
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_specs(item)


def pod_templates(node: Any) -> Iterator[Manifest]:
    """Every pod template (``metadata`` + ``spec`` with containers)."""
    if isinstance(node, dict):
        if isinstance(node.get("spec"), dict) and "containers" in node["spec"]:
            yield node
        for value in node.values():
            yield from pod_templates(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_templates(item)


def containers(manifest: Manifest) -> Iterator[Manifest]:
    """Every container, init container and the autoscaler sidecar's overrides."""
    for pod in pod_specs(manifest):
        yield from pod.get("initContainers", [])
        yield from pod["containers"]
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    if "autoscalerOptions" in spec:
        yield spec["autoscalerOptions"]


def all_manifests() -> Iterator[tuple[str, Manifest]]:
    for name, build in sorted(CASES.items()):
        yield name, build()
    rng = random.Random(20260314)
    for index in range(40):
        yield f"random-{index}", render_raycluster(random_spec(rng, index), created_at=CREATED_AT)


MANIFESTS = list(all_manifests())
IDS = [name for name, _ in MANIFESTS]


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_restricted_security_on_every_pod_and_container(name: str, manifest: Manifest) -> None:
    pods = list(pod_specs(manifest))
    assert pods, name
    for pod in pods:
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"]
        assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume
    for container in containers(manifest):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_requests_equal_limits(name: str, manifest: Manifest) -> None:
    for container in containers(manifest):
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container.get("name", "autoscaler")
        assert {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_ray_containers_have_platform_env_and_volumes(name: str, manifest: Manifest) -> None:
    for container in containers(manifest):
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["RAY_USAGE_STATS_ENABLED"] == "0"
        assert env["RAY_AUTH_MODE"] in ("disabled", "token")
        assert len(env) == len(container["env"]), "duplicate env names"
        gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert ("NCCL_SOCKET_IFNAME" in env) == (gpus > 0)
    for pod in pod_specs(manifest):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            if container["name"] not in ("ray-head", "ray-worker"):
                continue
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            shm = volumes[mounts["/dev/shm"]]["emptyDir"]
            memory = quantity_to_bytes(container["resources"]["limits"]["memory"])
            assert shm["medium"] == "Memory"
            assert 0 < quantity_to_bytes(shm["sizeLimit"]) <= memory
            assert "emptyDir" in volumes[mounts["/tmp/ray"]]
            assert all(m["name"] in volumes for m in container["volumeMounts"])


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_gpus_exactly_where_the_pool_has_gpus(name: str, manifest: Manifest) -> None:
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    gpu = DEFAULT_CATALOG.get(manifest["metadata"]["labels"]["mlplatform.discord.com/gpu-type"])
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in head["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        pod = group["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        if gpu.has_gpus:
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert group["rayStartParams"]["num-gpus"] == limits["nvidia.com/gpu"]
            assert pod["nodeSelector"] == gpu.node_selector
            assert pod["tolerations"] == [t.to_manifest() for t in gpu.tolerations]
            assert group["groupName"] == f"gpu-{gpu.name}"
        else:
            assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod
            assert group["rayStartParams"]["num-gpus"] == "0"
    if "submitterPodTemplate" in manifest["spec"]:
        assert "nvidia.com/gpu" not in str(manifest["spec"]["submitterPodTemplate"])


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=IDS)
def test_every_object_and_pod_template_carries_valid_platform_labels(name: str, manifest: Manifest) -> None:
    labels = manifest["metadata"]["labels"]
    for key, value in labels.items():
        assert _valid_label_key(key), key
        assert is_valid_label_value(value), (key, value)
    templates = list(pod_templates(manifest))
    assert templates
    for template in templates:
        assert template["metadata"]["labels"] == labels


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS[-10:], ids=IDS[-10:])
def test_random_specs_are_valid_for_the_crd(name: str, manifest: Manifest) -> None:
    assert manifest_problems(manifest) == []


def test_label_values_valid_and_distinct_for_many_odd_owners() -> None:
    rng = random.Random(7)
    seen: dict[str, str] = {}
    for index in range(500):
        owner = random_owner(rng)
        spec = ClusterSpec(name="owners", owner=owner, team=random_owner(rng), run_id=random_owner(rng))
        manifest = render_raycluster(spec, created_at=CREATED_AT)
        labels = manifest["metadata"]["labels"]
        assert all(is_valid_label_value(v) for v in labels.values()), (index, owner, labels)
        assert manifest["metadata"]["annotations"][OWNER] == owner  # the annotation keeps it verbatim
        assert seen.setdefault(labels[OWNER], owner) == owner, "two owners share a label value"


def test_autoscaling_head_keeps_the_token_out_of_the_ray_container() -> None:
    manifest = CASES["l4-autoscaling"]()
    spec = manifest["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    group = spec["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (0, 0, 4)
    head_pod = spec["headGroupSpec"]["template"]["spec"]
    token_mounts = [m for m in spec["autoscalerOptions"]["volumeMounts"] if m["name"] == "autoscaler-token"]
    assert token_mounts == [{"name": "autoscaler-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                             "readOnly": True}]
    assert all(m["name"] != "autoscaler-token" for m in head_pod["containers"][0]["volumeMounts"])
    assert any(v["name"] == "autoscaler-token" for v in head_pod["volumes"])


def test_head_only_cluster_has_no_worker_group_and_fixed_cluster_no_autoscaler() -> None:
    head_only = CASES["cpu-head-only"]()["spec"]
    assert "workerGroupSpecs" not in head_only and "enableInTreeAutoscaling" not in head_only
    fixed = CASES["cpu-2-workers"]()["spec"]
    group = fixed["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 2, 2)
    assert "autoscalerOptions" not in fixed


def test_object_store_and_shm_follow_the_spec() -> None:
    spec = ClusterSpec(name="store", workers=1, memory_per_worker="10Gi", head_memory="16Gi", object_store_memory="6Gi")
    manifest = render_raycluster(spec, created_at=CREATED_AT)
    worker = manifest["spec"]["workerGroupSpecs"][0]
    assert worker["rayStartParams"]["object-store-memory"] == str(6 * 2**30)
    shm = worker["template"]["spec"]["volumes"][0]["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "6Gi"}  # 30% of 10Gi is below the store: the store wins


def test_rayjob_shape() -> None:
    job = CASES["rayjob-a100"]()
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 600
    assert spec["runtimeEnvYAML"].startswith("env_vars:")
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    assert "command" not in submitter["containers"][0]  # KubeRay fills in `ray job submit`
    # The embedded cluster is exactly the RayCluster the same spec renders to.
    cluster = render_raycluster(ClusterSpec(**JOB_SPEC_FIELDS), created_at=CREATED_AT)
    assert spec["rayClusterSpec"] == cluster["spec"]
    assert job["metadata"] == cluster["metadata"]


def test_rendering_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("spec rendering must not open files")

    monkeypatch.setattr(builtins, "open", refuse)
    spec = ClusterSpec(name="pure", gpu_type="a10g", workers=1)
    manifests = [*render_manifests(spec, created_at=CREATED_AT),
                 render_rayjob(spec, entrypoint="python -c 1", created_at=CREATED_AT)]
    # Plain JSON types only, so `--dry-run -o json` and the Kubernetes client take them as they are.
    assert json.loads(json.dumps(manifests)) == manifests


def test_naive_created_at_is_utc() -> None:
    spec = ClusterSpec(name="tz")
    aware = render_raycluster(spec, created_at=CREATED_AT)
    naive = render_raycluster(spec, created_at=CREATED_AT.replace(tzinfo=None))
    assert aware == naive


def test_custom_policy_changes_ids_and_pull_policy() -> None:
    policy = SecurityPolicy(run_as_user=2000, run_as_group=3000, fs_group=3000, image_pull_policy="Always")
    manifest = render_raycluster(ClusterSpec(name="ids", workers=1), policy=policy, created_at=CREATED_AT)
    for pod in pod_specs(manifest):
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (2000, 3000)
        assert all(c["imagePullPolicy"] == "Always" for c in pod["containers"])
