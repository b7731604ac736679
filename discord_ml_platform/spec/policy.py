"""The platform's security policy and limits, and the check of a ``ClusterSpec`` against them.

The security part is the Kubernetes Pod Security Standards "restricted" profile, applied by the
renderer to every pod and container; the limits part is what one cluster may hold. Pure: a platform
team's YAML is parsed from text (:func:`policy_from_yaml`), the caller reads the file.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog
from discord_ml_platform.spec.cluster_spec import ClusterSpec
from discord_ml_platform.spec.errors import (
    ConfigError,
    PolicyViolation,
    Violation,
    format_validation_error,
    shown,
)
from discord_ml_platform.spec.images import IMAGE_REFERENCE_WORDS, is_image_reference
from discord_ml_platform.spec.labels import MANAGED_BY, PREFIX
from discord_ml_platform.spec.quantities import QuantityError, quantity_to_bytes
from discord_ml_platform.spec.yamldoc import load_mapping

# Environment variables the platform sets itself; a spec may not override them, because the
# whole cluster and every client must agree on them (Ray aborts on a mixed auth mode).
RESERVED_ENV = ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")
# What the kubelet accepts as an environment variable name (no '=' and not empty); we are
# stricter and ask for a portable shell name so `env` in the container shows it unchanged.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Label keys only the platform (and KubeRay) set: see is_reserved_label.
RESERVED_LABEL_PREFIXES = (PREFIX, "ray.io")
RESERVED_LABELS_WORDS = f"{PREFIX}/*, {MANAGED_BY}, ray.io/*"
# A label value longer than a DNS name is no label but a document; values are shortened to 63
# characters (with a hash) when rendered, so a longer one is refused rather than silently cut.
MAX_LABEL_VALUE_CHARS = 253
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# ASCII digits only ([0-9], not \d, which also matches other scripts' digits).
_DURATION = re.compile(r"^(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?$")
_SECONDS = re.compile(r"^[+-]?[0-9]+$")
# Longest duration anything here takes (a TTL, policy.max_ttl), checked before any arithmetic: a
# ``99999999999999999999d`` must be a clear error, not an OverflowError of timedelta or datetime.
MAX_DURATION = timedelta(days=365)
MAX_DURATION_WORDS = "365d"
_MAX_DURATION_CHARS = 32
_DURATION_HELP = "use e.g. 12h, 1d12h, 90m, 3600 (seconds) or PT12H"
_RANGE = f"durations from 0s to {MAX_DURATION_WORDS} are allowed"
_TIMEDELTA: TypeAdapter[timedelta] = TypeAdapter(timedelta)

# NCCL defaults for GPU workers. Pods get no RDMA devices unless a platform adds a device
# plugin, so InfiniBand is off (NCCL would otherwise probe and log errors) and traffic goes over
# the pod network interface; WARN surfaces real problems without flooding the job log.
DEFAULT_NCCL_ENV: dict[str, str] = {
    "NCCL_DEBUG": "WARN",
    "NCCL_SOCKET_IFNAME": "eth0",
    "NCCL_IB_DISABLE": "1",
}


def parse_duration(value: object) -> object:
    """Accept ``"8h"``, ``"1d12h"``, ``"90m"``, ``"3600"`` (seconds) and ISO 8601 (``"PT12H"``).

    Strings become a ``timedelta``; other values pass through for pydantic, numbers (seconds) once
    bounded. Every value is checked against :data:`MAX_DURATION` before any arithmetic.

    Raises:
        ValueError: not a duration, or longer than 365 days (or negative), in words a user can act on.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    if not isinstance(value, str):
        if not math.isfinite(value) or not 0 <= value <= MAX_DURATION.total_seconds():
            raise ValueError(f"{shown(value)} seconds is out of range: {_RANGE}")
        return value
    text = value.strip()
    if len(text) > _MAX_DURATION_CHARS:
        raise ValueError(
            f"{shown(value)} is not a duration: at most {_MAX_DURATION_CHARS} characters; {_DURATION_HELP}"
        )
    match = _DURATION.match(text)
    if match and any(match.groupdict().values()):
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}  # at most 32 digits: cheap
        return _bounded_duration(parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"], value)
    if _SECONDS.match(text):
        return _bounded_duration(int(text), value)
    if text.startswith(("P", "-P")) or ":" in text:
        # ISO 8601 and [-]HH:MM:SS: pydantic parses them (it caps the numbers it reads itself).
        try:
            parsed = _TIMEDELTA.validate_python(text)
        except ValidationError as err:
            if "too large" in str(err) or "may not exceed" in str(err):
                raise ValueError(f"{value!r} is out of range: {_RANGE}") from None
            raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}") from None
        return _bounded_duration(int(parsed.total_seconds()), value, parsed)
    raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")


def _bounded_duration(seconds: int, value: str, parsed: timedelta | None = None) -> timedelta:
    """``parsed`` (or ``seconds`` as a timedelta) if within 0..MAX_DURATION, else ``ValueError``."""
    if not 0 <= seconds <= MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is out of range: {_RANGE}")
    return parsed if parsed is not None else timedelta(seconds=seconds)


class SecurityPolicy(BaseModel):
    """Pod security settings and per-cluster limits that every rendered cluster obeys.

    The defaults match the ``rayproject/ray`` images, whose user ``ray`` has uid 1000 and gid 100.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_as_user: int = Field(default=1000, ge=1, description="UID of every container; never 0 (runAsNonRoot).")
    run_as_group: int = Field(default=100, ge=0, description="Primary GID of every container.")
    fs_group: int = Field(default=100, ge=0, description="GID that owns mounted volumes.")
    read_only_root_filesystem: bool = Field(
        default=False,
        description="Mount the image read-only; /tmp then becomes an emptyDir so Ray can still write.",
    )
    service_account: str = Field(default="ray-workload", description="Service account of every Ray pod.")
    allowed_service_accounts: tuple[str, ...] = Field(
        default=(), description="Other service accounts a spec may ask for besides `service_account`."
    )
    ray_auth_mode: Literal["disabled", "token"] = Field(
        default="disabled",
        description="RAY_AUTH_MODE of every Ray container and KubeRay authOptions.mode (token needs KubeRay >= 1.5.1).",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every container."
    )
    max_workers_per_cluster: int = Field(default=64, ge=0, description="Most worker pods one cluster may scale to.")
    max_gpus_per_cluster: int = Field(default=64, ge=0, description="Most GPUs one cluster may hold at its largest.")
    max_ttl: timedelta = Field(default=timedelta(hours=24), description="Longest lifetime a cluster may ask for.")
    max_memory_per_pod: str = Field(
        default="4Ti",
        description="Most memory one pod (head or worker) may ask for, a Kubernetes quantity; larger nodes are rare "
        "and a typo such as 40Ti should not reach the scheduler.",
    )
    allowed_image_prefixes: tuple[str, ...] | None = Field(
        default=None, description="If set, images must start with one of these (e.g. 'registry.example.com/ml/')."
    )
    allowed_namespaces: tuple[str, ...] | None = Field(
        default=None, description="If set, clusters may only be created in these namespaces."
    )
    shm_fraction: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Size of the memory-backed /dev/shm as a fraction of the pod's memory (at least the object store).",
    )
    max_object_store_fraction: float = Field(
        default=0.8, gt=0, lt=1, description="Largest object store as a fraction of a node's memory."
    )
    nccl_env: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_NCCL_ENV), description="NCCL variables of GPU worker containers."
    )
    autoscaler_idle_timeout_seconds: int = Field(
        default=60, ge=0, description="Seconds an idle worker lives before the autoscaler removes it."
    )

    @field_validator("max_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value)

    @field_validator("max_ttl")
    @classmethod
    def _positive_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("max_ttl must be positive")
        return value

    @field_validator("max_memory_per_pod")
    @classmethod
    def _memory_quantity(cls, value: str) -> str:
        try:
            amount = quantity_to_bytes(value)
        except QuantityError as err:
            raise ValueError(str(err)) from None
        if amount <= 0:
            raise ValueError(f"max_memory_per_pod must be positive, got {value!r}")
        return value

    @field_validator("service_account")
    @classmethod
    def _service_account_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(f"service account {value!r} must be a DNS-1123 subdomain")
        return value

    @field_validator("nccl_env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [name for name in env if not _ENV_NAME.match(name) or name in RESERVED_ENV]
        if bad:
            raise ValueError(f"invalid or reserved environment variable names: {', '.join(bad)}")
        return env

    def allows_service_account(self, name: str) -> bool:
        """Whether pods may run as ``name``."""
        return name == self.service_account or name in self.allowed_service_accounts


DEFAULT_POLICY = SecurityPolicy()


def policy_from_mapping(
    data: dict[str, Any], base: SecurityPolicy = DEFAULT_POLICY, where: str = "policy"
) -> SecurityPolicy:
    """Apply a parsed policy document to ``base``: given keys override, the rest stay.

    Raises:
        ConfigError: naming the key at fault and what it must be.
    """
    try:
        return SecurityPolicy.model_validate({**base.model_dump(), **data})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def policy_from_yaml(text: str, base: SecurityPolicy = DEFAULT_POLICY) -> SecurityPolicy:
    """Parse a platform team's policy YAML; keys are the fields of :class:`SecurityPolicy`.

    Example::

        max_gpus_per_cluster: 32
        max_ttl: 12h
        allowed_image_prefixes: [registry.example.com/ml/, rayproject/ray:]
        nccl_env: {NCCL_DEBUG: WARN, NCCL_SOCKET_IFNAME: eth0, NCCL_IB_DISABLE: "0"}

    Args:
        text: The YAML text (callers read the file).
        base: Policy whose values apply where the document is silent.

    Raises:
        ConfigError: on bad YAML or an invalid value, naming the key.
    """
    return policy_from_mapping(load_mapping(text, "policy"), base)


def effective_service_account(spec: ClusterSpec, policy: SecurityPolicy) -> str:
    """The service account pods run as: the spec's if it differs from ClusterSpec's default, else the policy's.

    Comparing with the default (not ``model_fields_set``) keeps this stable across ``with_overrides``.
    """
    if spec.service_account != ClusterSpec.model_fields["service_account"].default:
        return spec.service_account
    return policy.service_account


def check_policy(
    spec: ClusterSpec, policy: SecurityPolicy = DEFAULT_POLICY, catalog: GpuCatalog = DEFAULT_CATALOG
) -> None:
    """Check ``spec`` against the platform policy and catalog before anything is rendered.

    Besides the limits (workers, GPUs, memory per pod, TTL, namespaces, images, service accounts) it
    refuses what no caller may set: reserved environment variables and labels (:func:`is_reserved_label`),
    so the CLI, the Launchpad and every other caller refuse them the same way.

    Args:
        spec: The cluster asked for.
        policy: The platform limits.
        catalog: The GPU catalog in effect.

    Raises:
        UnknownGpuTypeError: when the catalog has no ``spec.gpu_type``.
        PolicyViolation: listing every broken rule with the field, its value and what is allowed.
    """
    gpu = catalog.get(spec.gpu_type)
    found: list[Violation] = []

    if policy.allowed_namespaces is not None and spec.namespace not in policy.allowed_namespaces:
        found.append(Violation("namespace", spec.namespace, f"one of {', '.join(policy.allowed_namespaces)}"))
    found.extend(_image_violations(spec.image, policy))

    limit = policy.max_workers_per_cluster
    for field in ("workers", "max_workers"):
        value = getattr(spec, field)
        if value is not None and value > limit:
            found.append(Violation(field, value, f"0..{limit} (policy.max_workers_per_cluster)"))

    # A GPU cluster is billed and scheduled at its largest size, so the autoscaling bound counts.
    largest = max(spec.workers, spec.max_workers or 0)
    if gpu.has_gpus:
        if spec.gpus_per_worker > gpu.max_gpus_per_node:
            found.append(
                Violation("gpus_per_worker", spec.gpus_per_worker, f"1..{gpu.max_gpus_per_node} on a {gpu.name} node")
            )
        total = largest * spec.gpus_per_worker
        if total > policy.max_gpus_per_cluster:
            found.append(
                Violation(
                    "gpus_per_worker",
                    spec.gpus_per_worker,
                    f"at most {policy.max_gpus_per_cluster} GPUs per cluster (policy.max_gpus_per_cluster); "
                    f"{largest} workers x {spec.gpus_per_worker} GPUs = {total}",
                )
            )
    elif spec.gpus_per_worker:
        found.append(
            Violation("gpus_per_worker", spec.gpus_per_worker, f"0 on the {gpu.name!r} pool, which has no GPUs")
        )

    if spec.ttl > policy.max_ttl:
        found.append(Violation("ttl", str(spec.ttl), f"at most {policy.max_ttl} (policy.max_ttl)"))

    account = effective_service_account(spec, policy)
    if not policy.allows_service_account(account):
        allowed = (policy.service_account, *policy.allowed_service_accounts)
        found.append(Violation("service_account", account, f"one of {', '.join(allowed)}"))

    for name in spec.env:
        if name in RESERVED_ENV:
            found.append(
                Violation(f"env.{name}", spec.env[name], "not settable: the platform sets it on every Ray container")
            )
        elif not _ENV_NAME.match(name):
            found.append(Violation("env", name, "names of letters, digits and '_', not starting with a digit"))

    found.extend(_label_violations(spec.labels))
    found.extend(_memory_violations(spec, policy))
    found.extend(_object_store_violations(spec, policy))
    if found:
        raise PolicyViolation(found)


def is_reserved_label(key: str) -> bool:
    """Whether ``key`` is a label the platform or KubeRay sets, which no spec may set itself.

    Reserved: every ``mlplatform.discord.com/*`` key (owner, run id, expiry: what the sweeper and
    X-Ray trust), ``app.kubernetes.io/managed-by`` (what marks a cluster as the platform's) and
    KubeRay's ``ray.io/*``; subdomains of the two prefixes too.
    """
    prefix = key.rpartition("/")[0].lower()
    if key.lower() == MANAGED_BY:
        return True
    return any(prefix == reserved or prefix.endswith("." + reserved) for reserved in RESERVED_LABEL_PREFIXES)


def _label_violations(labels: dict[str, str]) -> list[Violation]:
    found = []
    for key, value in labels.items():
        if not _valid_label_key(key):
            found.append(
                Violation("labels", key, "Kubernetes label keys: [prefix/]name, name of at most 63 of [A-Za-z0-9_.-]")
            )
        elif is_reserved_label(key):
            found.append(Violation("labels", key, f"reserved for the platform and KubeRay ({RESERVED_LABELS_WORDS})"))
        elif len(value) > MAX_LABEL_VALUE_CHARS:
            found.append(Violation("labels", value, f"label {key!r} takes at most {MAX_LABEL_VALUE_CHARS} characters"))
    return found


def _image_violations(image: str, policy: SecurityPolicy) -> list[Violation]:
    if not is_image_reference(image):
        return [Violation("image", image, IMAGE_REFERENCE_WORDS)]
    if policy.allowed_image_prefixes is not None and not image.startswith(policy.allowed_image_prefixes):
        prefixes = ", ".join(policy.allowed_image_prefixes)
        return [Violation("image", image, f"an image starting with one of {prefixes}")]
    return []


def _memory_violations(spec: ClusterSpec, policy: SecurityPolicy) -> list[Violation]:
    limit = quantity_to_bytes(policy.max_memory_per_pod)
    found = []
    for field in ("head_memory", "memory_per_worker"):
        memory = getattr(spec, field)
        if memory is not None and quantity_to_bytes(memory) > limit:
            found.append(
                Violation(field, memory, f"at most {policy.max_memory_per_pod} per pod (policy.max_memory_per_pod)")
            )
    return found


def _object_store_violations(spec: ClusterSpec, policy: SecurityPolicy) -> list[Violation]:
    # Ray needs heap memory besides the object store; a store that fills the pod gets it OOM-killed.
    found = []
    nodes = [("head_memory", spec.head_memory)]
    if max(spec.workers, spec.max_workers or 0) > 0:
        nodes.append(("memory_per_worker", spec.memory_per_worker or "0"))
    for field, memory in nodes:
        store = spec.object_store_bytes(memory)
        ceiling = int(quantity_to_bytes(memory) * policy.max_object_store_fraction)
        if store > ceiling:
            found.append(
                Violation(
                    "object_store_memory",
                    spec.object_store_memory,
                    f"at most {policy.max_object_store_fraction:.0%} of {field}={memory} ({ceiling} bytes)",
                )
            )
    return found


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))
