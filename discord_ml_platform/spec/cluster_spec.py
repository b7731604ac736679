"""``ClusterSpec``: everything needed to create one Ray cluster, validated before anything runs.

Pure: no I/O. The same spec drives the local backend (Ray processes) and KubeRay manifests.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog, GpuType
from discord_ml_platform.spec.images import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, DEFAULT_IMAGES, RAY_VERSION, RayImages
from discord_ml_platform.spec.labels import DEFAULT_DEPLOYMENT
from discord_ml_platform.spec.quantities import QuantityError, bytes_to_quantity, parse_quantity, quantity_to_bytes

__all__ = ["DEFAULT_GPU_IMAGE", "DEFAULT_IMAGE", "MAX_CLUSTER_NAME", "RAY_VERSION", "ClusterSpec", "catalog_from"]
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# KubeRay derives pod and service names from the cluster name (``<name>-head-svc`` and
# ``<name>-<group>-worker-<hash>``); 47 characters keeps those under the 63-character limit.
MAX_CLUSTER_NAME = 47
MAX_WORKERS = 256


def catalog_from(info: ValidationInfo) -> GpuCatalog:
    """The catalog passed as validation context (``{"catalog": ...}``), else the built-in one."""
    context = info.context or {}
    catalog = context.get("catalog") if isinstance(context, dict) else None
    return catalog if isinstance(catalog, GpuCatalog) else DEFAULT_CATALOG


def images_from(info: ValidationInfo) -> RayImages:
    """The platform images passed as validation context (``{"images": ...}``), else the built-in ones."""
    context = info.context or {}
    images = context.get("images") if isinstance(context, dict) else None
    return images if isinstance(images, RayImages) else DEFAULT_IMAGES


class ClusterSpec(BaseModel):
    """A Ray cluster for one run: hardware, image, ownership and lifetime.

    Build with ``ClusterSpec.model_validate(data, context={"catalog": catalog, "images": images})``
    to check it against the catalog in effect (the platform core does); unset CPUs and memory are
    filled from the catalog's defaults, an unset image from the pool's or the platform's images.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    name: str = Field(description="Cluster name: a DNS-1123 label of at most 47 characters.")
    namespace: str = Field(default="ray", description="Kubernetes namespace (ignored by the local backend).")
    gpu_type: str = Field(default="cpu", description="GPU pool from the catalog, e.g. 'cpu', 'a10g', 'h100-80gb'.")
    workers: int = Field(default=0, ge=0, le=MAX_WORKERS, description="Worker nodes (pods) besides the head.")
    min_workers: int | None = Field(default=None, ge=0, le=MAX_WORKERS, description="Autoscaling lower bound.")
    max_workers: int | None = Field(default=None, ge=0, le=MAX_WORKERS, description="Autoscaling upper bound.")
    gpus_per_worker: int = Field(default=0, ge=0, le=16, description="GPUs per worker; 0 on the cpu pool.")
    cpus_per_worker: float | None = Field(
        default=None, gt=0, le=512, description="CPUs per worker; default from the catalog."
    )
    memory_per_worker: str | None = Field(
        default=None, description="Memory per worker (Kubernetes quantity); default from the catalog."
    )
    head_cpus: float = Field(default=1, gt=0, le=128, description="CPUs of the head node.")
    head_memory: str = Field(default="4Gi", description="Memory of the head node (Kubernetes quantity).")
    object_store_memory: str | None = Field(
        default=None,
        description="Ray object store per node; default 25% of the node's memory (Ray's 30% of host RAM is too much for shared machines).",
    )
    image: str = Field(
        default=DEFAULT_IMAGE,
        description="Container image with Ray and the workload's code; default: the pool's image, else the "
        "platform's CPU or GPU image.",
    )
    ray_version: str = Field(default=RAY_VERSION, description="Ray version of the image.")
    owner: str = Field(
        default="unknown", min_length=1, max_length=253, description="Person or system that owns the cluster."
    )
    team: str = Field(default="ml-platform", min_length=1, max_length=253, description="Team billed for the cluster.")
    run_id: str | None = Field(default=None, description="Dagster run id that requested the cluster, if any.")
    deployment: str = Field(
        default=DEFAULT_DEPLOYMENT,
        description="Deployment (DMP_DEPLOYMENT) whose cleanup sensor may sweep the cluster; set by the platform.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels put on the cluster.")
    ttl: timedelta = Field(
        default=timedelta(hours=8), description="Lifetime after which the sweeper deletes the cluster."
    )
    service_account: str = Field(default="ray-workload", description="Service account of the Ray pods.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every Ray container."
    )

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, name: str) -> str:
        if len(name) > MAX_CLUSTER_NAME or not DNS_1123_LABEL.match(name):
            raise ValueError(
                f"name {name!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
                f"starting and ending with a letter or digit, at most {MAX_CLUSTER_NAME} characters"
            )
        return name

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type_in_catalog(cls, gpu_type: str, info: ValidationInfo) -> str:
        # A field check (not only the pool check below) so an unknown pool is reported together with
        # every other bad field, under its own name.
        catalog_from(info).get(gpu_type)
        return gpu_type

    @field_validator("namespace", "deployment")
    @classmethod
    def _is_dns_label(cls, value: str, info: ValidationInfo) -> str:
        if len(value) > 63 or not DNS_1123_LABEL.match(value):
            raise ValueError(f"{info.field_name} {value!r} must be a DNS-1123 label of at most 63 characters")
        return value

    @field_validator("memory_per_worker", "head_memory", "object_store_memory")
    @classmethod
    def _memory_is_quantity(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            amount = parse_quantity(value)
        except QuantityError as err:
            raise ValueError(str(err)) from None
        if amount < 64 * 2**20:
            raise ValueError(f"memory {value!r} is below the 64Mi minimum a Ray node needs")
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl_positive(cls, ttl: timedelta) -> timedelta:
        if ttl <= timedelta(0) or ttl > timedelta(days=7):
            raise ValueError("ttl must be between 1 second and 7 days")
        return ttl

    @model_validator(mode="after")
    def _fits_the_pool(self, info: ValidationInfo) -> ClusterSpec:
        gpu = catalog_from(info).get(self.gpu_type)
        if "image" not in self.model_fields_set:
            self.image = images_from(info).for_pool(gpu)
        if gpu.has_gpus:
            if self.gpus_per_worker < 1:
                self.gpus_per_worker = 1
            if self.gpus_per_worker > gpu.max_gpus_per_node:
                raise ValueError(
                    f"gpus_per_worker={self.gpus_per_worker} does not fit a {gpu.name} node "
                    f"(allowed 1..{gpu.max_gpus_per_node})"
                )
        elif self.gpus_per_worker:
            raise ValueError(f"gpus_per_worker must be 0 on the {gpu.name!r} pool, which has no GPUs")
        per_unit = max(self.gpus_per_worker, 1)
        if self.cpus_per_worker is None:
            self.cpus_per_worker = gpu.cpus_per_gpu * per_unit
        if self.memory_per_worker is None:
            self.memory_per_worker = bytes_to_quantity(quantity_to_bytes(gpu.memory_per_gpu) * per_unit)
        if self.min_workers is not None and self.min_workers > self.workers:
            raise ValueError(f"min_workers={self.min_workers} is above workers={self.workers}")
        if self.max_workers is not None and self.max_workers < self.workers:
            raise ValueError(f"max_workers={self.max_workers} is below workers={self.workers}")
        return self

    # Derived values -------------------------------------------------------------------------

    def gpu(self, catalog: GpuCatalog = DEFAULT_CATALOG) -> GpuType:
        """The catalog entry of this spec's pool."""
        return catalog.get(self.gpu_type)

    @property
    def total_gpus(self) -> int:
        """GPUs across all workers (the head holds none)."""
        return self.workers * self.gpus_per_worker

    @property
    def autoscaling(self) -> bool:
        """Whether min/max bounds ask for the Ray autoscaler."""
        return self.min_workers is not None or self.max_workers is not None

    def memory_per_worker_bytes(self) -> int:
        """Memory of one worker in bytes."""
        return quantity_to_bytes(self.memory_per_worker or "0")

    def object_store_bytes(self, node_memory: str) -> int:
        """Object store size for a node of ``node_memory``: the explicit value or a quarter of it."""
        if self.object_store_memory:
            return quantity_to_bytes(self.object_store_memory)
        return max(quantity_to_bytes(node_memory) // 4, 78 * 2**20)  # Ray refuses less than 75 MiB.

    def expires_at(self, created: datetime) -> datetime:
        """When the sweeper may delete a cluster created at ``created``."""
        return created + self.ttl

    def hourly_price(self, catalog: GpuCatalog = DEFAULT_CATALOG) -> float:
        """Estimated price per hour of the whole cluster from the catalog."""
        return self.gpu(catalog).cluster_price(self.workers, self.gpus_per_worker)
