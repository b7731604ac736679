"""KubeRay ``ray.io/v1`` RayJobs through the official ``kubernetes`` client: create, read, follow, stop.

In RayJob mode KubeRay owns the cluster's life: it creates the RayCluster from
``spec.rayClusterSpec``, submits ``spec.entrypoint`` once the head is ready, and deletes the
cluster ``ttlSecondsAfterFinished`` after the job ends (``shutdownAfterJobFinishes``), whether or
not the process that created the RayJob still runs. This module is what that process needs:
render and create the RayJob, read its status as a :class:`RayJobState`, and stop it early
(suspend or delete) when the run that owns it is terminated. Nothing Dagster-specific.

The status fields it reads and what they mean are described in :mod:`.rayjobs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Self

from discord_ml_platform.backends.base import ClusterError
from discord_ml_platform.backends.kuberay import make_api_client
from discord_ml_platform.backends.kuberay_retry import RetryPolicy, api_error_message, call_with_retries, status_code
from discord_ml_platform.backends.rayjobs import RayJobInfo, RayJobState
from discord_ml_platform.spec import DEFAULT_PLATFORM_CONFIG, ClusterSpec, PlatformConfig
from discord_ml_platform.spec.render import render_rayjob

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"


class KubeRayJobs:
    """RayJobs in one namespace.

    Args:
        kubeconfig: Kubeconfig file; ``None``: in-cluster config in a pod, else the default one.
        context: Kubeconfig context.
        namespace: Namespace of the RayJobs (where they are created, read and deleted).
        all_namespaces: Whether :meth:`list` looks in every namespace by default.
        api_client: A ready ``ApiClient`` to use instead of loading a config.
        platform_config: Catalog, policy and images for rendering (the platform core passes the one
            in effect; the default is the built-in one).
        retry: Retry policy of every API call.
    """

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        namespace: str = "ray",
        all_namespaces: bool = False,
        api_client: Any = None,
        platform_config: PlatformConfig | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.all_namespaces = all_namespaces
        self._owns_client = api_client is None
        self.api_client = api_client if api_client is not None else make_api_client(kubeconfig, context)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.platform_config = platform_config or DEFAULT_PLATFORM_CONFIG
        self.retry = retry or RetryPolicy()

    def close(self) -> None:
        """Close the connection pool (only if this object created the client)."""
        if self._owns_client:
            self.api_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", (5.0, 30.0))
        try:
            return call_with_retries(lambda: fn(*args, **kwargs), what, self.retry)
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) == 404:
                raise
            raise ClusterError(f"Kubernetes API call failed: {what}: {api_error_message(err)}") from err

    def render(
        self, spec: ClusterSpec, *, entrypoint: str, created_at: datetime | None = None, **job: Any
    ) -> dict[str, Any]:
        """The RayJob for ``spec`` (see :func:`~discord_ml_platform.spec.render.render_rayjob` for ``job``)."""
        cfg = self.platform_config
        return render_rayjob(
            spec,
            entrypoint=entrypoint,
            catalog=cfg.catalog,
            policy=cfg.policy,
            created_at=created_at or datetime.now(UTC),
            **job,
        )

    def create(self, manifest: dict[str, Any]) -> RayJobState:
        """Create the RayJob ``manifest`` (in its own namespace).

        Raises:
            ClusterError: the name is taken or the API refused.
        """
        meta = manifest["metadata"]
        what = f"create RayJob {meta['namespace']}/{meta['name']}"
        try:
            created = self._call(
                what, self.custom.create_namespaced_custom_object, GROUP, VERSION, meta["namespace"], PLURAL, manifest
            )
        except ClusterError:
            raise
        except Exception as err:
            raise ClusterError(f"{what}: {api_error_message(err)}") from err
        log.info("created RayJob %s/%s", meta["namespace"], meta["name"])
        return RayJobState.from_object(created)

    def get(self, name: str) -> RayJobState:
        """The RayJob's state (``exists=False`` when it is gone)."""
        obj = self.get_object(name)
        return RayJobState(name, self.namespace, exists=False) if obj is None else RayJobState.from_object(obj)

    def get_object(self, name: str) -> dict[str, Any] | None:
        """The RayJob as a dict, or ``None``."""
        try:
            return self._call(
                f"get RayJob {self.namespace}/{name}",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
            )
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) == 404:
                return None
            raise

    def list(
        self, label_selector: dict[str, str] | None = None, *, all_namespaces: bool | None = None
    ) -> list[RayJobInfo]:
        """RayJobs whose labels match, in :attr:`namespace` or in every namespace (default: as constructed)."""
        all_namespaces = self.all_namespaces if all_namespaces is None else all_namespaces
        selector = ",".join(f"{k}={v}" for k, v in sorted((label_selector or {}).items())) or None
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        where = "all namespaces" if all_namespaces else self.namespace
        try:
            if all_namespaces:
                body = self._call(
                    f"list RayJobs in {where}", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, **kwargs
                )
            else:
                body = self._call(
                    f"list RayJobs in {where}",
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    **kwargs,
                )
        except ClusterError:
            raise
        except Exception as err:
            raise ClusterError(f"list RayJobs in {where}: {api_error_message(err)}") from err
        found = []
        for item in body.get("items") or []:
            try:  # one unreadable RayJob must not hide the others from the sweeper
                found.append(RayJobInfo.from_object(item))
            except Exception as err:
                log.warning(
                    "a RayJob in %s cannot be read (%s): %s", where, (item.get("metadata") or {}).get("name"), err
                )
        return found

    def follow(self, name: str, poll_s: float = 0.25) -> Iterator[RayJobState]:
        """Yield the RayJob's state every ``poll_s`` until it is finished (last state included)."""
        while True:
            state = self.get(name)
            yield state
            if state.finished:
                return
            time.sleep(poll_s)

    def suspend(self, name: str) -> None:
        """Set ``spec.suspend``: KubeRay stops the job and deletes the cluster, keeping the RayJob."""
        try:
            self._call(
                f"suspend RayJob {self.namespace}/{name}",
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                {"spec": {"suspend": True}},
            )
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) != 404:
                raise

    def delete(self, name: str, *, namespace: str | None = None, wait_s: float = 0, poll_s: float = 0.2) -> bool:
        """Delete the RayJob (its RayCluster is garbage-collected with it); ``True`` if it existed.

        With ``wait_s`` > 0, wait up to that long until the RayJob is gone. ``namespace`` defaults
        to :attr:`namespace` (waiting is only possible there).
        """
        where = namespace or self.namespace
        try:
            self._call(
                f"delete RayJob {where}/{name}",
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                where,
                PLURAL,
                name,
                propagation_policy="Background",
            )
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) == 404:
                return False
            raise
        deadline = time.monotonic() + (wait_s if where == self.namespace else 0)
        while time.monotonic() < deadline and self.get_object(name) is not None:
            time.sleep(poll_s)
        return True


__all__ = ["KubeRayJobs", "RayJobInfo", "RayJobState"]
