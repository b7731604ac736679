"""Label keys the platform puts on every cluster, and conversion of any text to a valid label value.

Kubernetes label values are at most 63 characters of ``[A-Za-z0-9_.-]`` that start and end with an
alphanumeric. Owners such as ``"Ada Lovelace <ada@discord.com>"`` must still produce a valid,
stable and recognisable value, so odd characters become ``-`` and long values keep a readable
prefix plus a short hash of the original.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime

PREFIX = "mlplatform.discord.com"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "discord-ml-platform"
OWNER = f"{PREFIX}/owner"
TEAM = f"{PREFIX}/team"
RUN_ID = f"{PREFIX}/dagster-run-id"
GPU_TYPE = f"{PREFIX}/gpu-type"
CLUSTER = f"{PREFIX}/cluster"
# Expiry as UTC seconds since the epoch: sortable, and a valid label value (no ':' allowed).
EXPIRES_AT = f"{PREFIX}/expires-at"
# The Dagster deployment (``DMP_DEPLOYMENT``) whose cleanup sensor may sweep the cluster: several
# deployments can share a namespace without deleting each other's clusters.
DEPLOYMENT = f"{PREFIX}/deployment"
DEFAULT_DEPLOYMENT = "default"
# KubeRay's labels on the RayCluster it creates for a RayJob: the kind of its creator (value
# ``ORIGIN_RAYJOB``) and the RayJob's name. Such a cluster is its RayJob's to delete, never a sweeper's.
ORIGIN_CRD_LABEL, ORIGIN_NAME_LABEL = "ray.io/originated-from-crd", "ray.io/originated-from-cr-name"
ORIGIN_RAYJOB = "RayJob"

# Dagster run tag naming the GPU pool a run's cluster uses: what the run coordinator's per-pool
# limits count (dagster.yaml). Set from the run config by every launcher.
GPU_POOL_RUN_TAG = "dmp/gpu-pool"
# Resource key of the Dagster code location's Ray cluster resource: where a run config sets the
# cluster's shape (``resources.ray_cluster.config``), for the code location and ``dmp run`` alike.
CLUSTER_RESOURCE_KEY = "ray_cluster"

MAX_VALUE = 63
_VALID_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_INVALID_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")


def is_valid_label_value(value: str) -> bool:
    """Whether Kubernetes accepts ``value`` as a label value."""
    return len(value) <= MAX_VALUE and bool(_VALID_VALUE.match(value))


def label_value(text: str) -> str:
    """Turn any text into a valid label value; valid input comes back unchanged.

    Invalid characters become ``-``; a value that changed or is too long gets a 8-character hash
    of the original appended, so two different owners never collide.
    """
    if is_valid_label_value(text):
        return text
    cleaned = _INVALID_CHARS.sub("-", text).strip("-_.")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = cleaned[: MAX_VALUE - len(digest) - 1].rstrip("-_.")
    return f"{head}-{digest}" if head else digest


def expiry_value(moment: datetime) -> str:
    """Label value for an expiry time (UTC epoch seconds)."""
    return str(int(moment.astimezone(UTC).timestamp()))


def parse_expiry(value: object) -> datetime | None:
    """Inverse of :func:`expiry_value`; ``None`` when absent or not a time this platform can hold.

    Total: labels are anyone's to edit (a patch, a hand-written local record), so no value raises,
    not even one past the year 9999 (``253402300800``) or thousands of digits long.
    """
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def cluster_labels(
    *,
    name: str,
    owner: str,
    team: str,
    gpu_type: str,
    expires_at: datetime,
    run_id: str | None = None,
    deployment: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The platform's labels for one cluster, every value valid for Kubernetes.

    The platform's own keys win over the same keys in ``extra``.
    """
    labels = {label_key: label_value(v) for label_key, v in (extra or {}).items()}
    labels.update(
        {
            MANAGED_BY: MANAGED_BY_VALUE,
            CLUSTER: label_value(name),
            OWNER: label_value(owner),
            TEAM: label_value(team),
            GPU_TYPE: label_value(gpu_type),
            EXPIRES_AT: expiry_value(expires_at),
        }
    )
    if run_id:
        labels[RUN_ID] = label_value(run_id)
    if deployment:
        labels[DEPLOYMENT] = label_value(deployment)
    return labels
