"""RayJobs in the local KubeRay operator: a cluster per job, the job submitted, mirrored, cleaned up.

What KubeRay's RayJob controller does, small (one :class:`RayJobReconciler` thread per RayJob uid):

1. ``Initializing``: pick ``jobId`` (``spec.jobId`` or ``<name>-<random>``) and ``rayClusterName``
   (``<name>-<random>``), create that RayCluster from ``spec.rayClusterSpec`` with a controller
   ``ownerReference`` to the RayJob (so deleting the RayJob cascades) and the RayJob's labels;
   the RayCluster side of this operator brings it up as a local Ray head.
2. Once the RayCluster is ``ready``: ``dashboardURL`` (``host:port``) is written and the entrypoint is
   submitted through the head's Jobs API with ``submission_id = jobId`` (what the submitter pod's
   ``ray job submit`` does), ``runtimeEnvYAML`` and ``metadata`` included. A failed submission
   ends in ``Failed`` / ``SubmissionFailed``.
3. ``Running``: the Ray job's status is mirrored into ``jobStatus`` / ``message``; a terminal
   status ends in ``Complete`` (``SUCCEEDED``, ``succeeded`` + 1) or ``Failed`` / ``AppFailed``
   (``failed`` + 1), with ``endTime``.
3a. ``backoffLimit``: a failure (any reason but ``DeadlineExceeded``) while ``failed`` < ``backoffLimit`` + 1
   goes to ``Retrying`` instead of ``Failed`` (in the same status update, as KubeRay): the attempt's
   RayCluster is deleted, the attempt's fields are cleared (``New``), and the walk starts again at 1
   with a new cluster, the same ``jobId`` (``spec.jobId``) and a new ``startTime``.
4. ``activeDeadlineSeconds`` counts from ``startTime`` in every non-terminal state: past it the job
   is stopped and the RayJob ends in ``Failed`` / ``DeadlineExceeded``.
5. ``spec.suspend``: the job is stopped and the RayCluster deleted; ``Suspended``.
6. After the end, with ``shutdownAfterJobFinishes``: ``ttlSecondsAfterFinished`` after ``endTime``
   the RayCluster is deleted, or, when the operator runs with ``DELETE_RAYJOB_CR_AFTER_JOB_FINISHES=true``
   (KubeRay's switch of the same name), the RayJob itself, which cascades to its RayCluster.

``OperatorFaults.job_fails`` (global or annotation ``...fault-job-fails``) replaces the entrypoint
with one that exits 1, so the job ends ``FAILED`` whatever it would have done. Not emulated:
``clusterSelector``, ``deletionStrategy``, ``schedule``, submitter pods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

from discord_ml_platform.backends.kuberay_retry import status_code
from discord_ml_platform.backends.kuberay_status import default_endpoint_resolver
from discord_ml_platform.backends.kuberay_watch import ResourceWatch
from discord_ml_platform.spec.labels import ORIGIN_CRD_LABEL, ORIGIN_NAME_LABEL, ORIGIN_RAYJOB

from . import operator_objects as objs
from .faults import OperatorFaults, operator_faults_for
from .operator_cluster import OperatorApi

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
RC_PLURAL = "rayclusters"
DELETE_RAYJOB_ENV = "DELETE_RAYJOB_CR_AFTER_JOB_FINISHES"
FAILING_ENTRYPOINT = "python -c \"import sys; print('sandbox fault: job_fails'); sys.exit(1)\""
TERMINAL_DEPLOYMENT = ("Complete", "Failed", "ValidationFailed")
TERMINAL_JOB = ("SUCCEEDED", "FAILED", "STOPPED")
SUBMIT_RETRY_S = 60.0
RETRY_CLUSTER_GONE_S = 120.0  # how long a retry waits for the failed attempt's cluster to be deleted


class _Gone(Exception):
    """The RayJob was deleted, or the operator stops: stop reconciling it."""


def _parse(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _ms_to_stamp(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generated_name(name: str) -> str:
    """``<name>-<5 random chars>``, as KubeRay names a RayJob's cluster and job id (<= 47 chars)."""
    return f"{name[:41].rstrip('-')}-{objs.short_hash()}"


def build_raycluster(rayjob: objs.Obj, cluster_name: str) -> objs.Obj:
    """The RayCluster of a RayJob: its ``rayClusterSpec``, labels and annotations, owned by it."""
    meta = rayjob["metadata"]
    labels = dict(meta.get("labels") or {})
    labels.update({ORIGIN_CRD_LABEL: ORIGIN_RAYJOB, ORIGIN_NAME_LABEL: meta["name"]})
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": cluster_name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [objs.controller_reference(rayjob)],
        },
        "spec": dict((rayjob.get("spec") or {}).get("rayClusterSpec") or {}),
    }


def deadline_message(start_time: str, deadline_s: int) -> str:
    """KubeRay's message for ``DeadlineExceeded``."""
    return (
        f"The RayJob has passed the activeDeadlineSeconds. StartTime: {start_time}. ActiveDeadlineSeconds: {deadline_s}"
    )


class RayJobReconciler:
    """Reconciles one RayJob incarnation in a thread; stopped by :meth:`cancel`.

    Args:
        api: The operator's API calls.
        rayjob: The RayJob as first seen.
        faults: The operator faults in effect for it.
        poll_s: How often the RayCluster and the Ray job are checked.
    """

    def __init__(self, api: OperatorApi, rayjob: objs.Obj, faults: OperatorFaults, poll_s: float = 0.5) -> None:
        self.api = api
        self.rayjob = rayjob
        self.faults = faults
        self.poll_s = poll_s
        self.uid = rayjob["metadata"]["uid"]
        self.name = rayjob["metadata"]["name"]
        self.namespace = rayjob["metadata"]["namespace"]
        self.key = f"{self.namespace}/{self.name}"
        self.status: objs.Obj = dict(rayjob.get("status") or {})
        self.cancelled = threading.Event()
        self._client: Any = None
        self._thread = threading.Thread(target=self._run, name=f"rayjob-{self.key}", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Reconcile in a background thread."""
        self._thread.start()

    def cancel(self) -> None:
        """Stop at the next step (the RayJob is gone or the operator stops)."""
        self.cancelled.set()

    def join(self, timeout_s: float) -> None:
        """Wait for the thread to end."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _sleep(self, seconds: float) -> None:
        if self.cancelled.wait(max(seconds, 0)):
            raise _Gone()

    def _run(self) -> None:
        try:
            self._sleep(self.faults.reconcile_delay_s)
            self._reconcile()
        except _Gone:
            pass
        except Exception as err:
            if self.cancelled.is_set() or status_code(err) == 404 or status_code(err.__cause__ or err) == 404:
                return
            log.exception("reconciling RayJob %s failed", self.key)
            self.api.event(self.rayjob, "ReconcileError", f"local operator: {err}", warning=True)

    # --- API -------------------------------------------------------------------------------

    def _get(self, plural: str, name: str) -> objs.Obj | None:
        try:
            return self.api.call(
                f"get {plural} {self.namespace}/{name}",
                self.api.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
            )
        except Exception as err:
            if status_code(err) == 404 or status_code(err.__cause__ or err) == 404:
                return None
            raise

    def _current(self) -> objs.Obj:
        rayjob = self._get(PLURAL, self.name)
        if rayjob is None or rayjob["metadata"].get("uid") != self.uid or rayjob["metadata"].get("deletionTimestamp"):
            raise _Gone()
        self.rayjob = rayjob
        return rayjob

    def _write(self, clear: tuple[str, ...] = (), **changes: Any) -> None:
        """Merge ``changes`` (``None`` values skipped) into the status and remove the ``clear`` fields."""
        if self.cancelled.is_set():
            raise _Gone()
        self.status.update({k: v for k, v in changes.items() if v is not None})
        for key in clear:
            self.status.pop(key, None)
        self.status["observedGeneration"] = int(self.rayjob["metadata"].get("generation") or 1)
        body = {**self.status, **dict.fromkeys(clear)}  # null removes a field (JSON merge patch)
        try:
            self.api.call(
                "patch RayJob status",
                self.api.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                {"status": body},
            )
        except Exception as err:
            if status_code(err) == 404 or status_code(err.__cause__ or err) == 404:
                raise _Gone() from err
            raise

    def _delete(self, plural: str, name: str) -> None:
        with contextlib.suppress(Exception):
            self.api.call(
                f"delete {plural} {self.namespace}/{name}",
                self.api.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                propagation_policy="Background",
            )

    # --- the walk --------------------------------------------------------------------------

    def _reconcile(self) -> None:
        spec = self.rayjob.get("spec") or {}
        while self.status.get("jobDeploymentStatus") not in TERMINAL_DEPLOYMENT:
            if self.status.get("jobDeploymentStatus") == "Retrying":
                self._retry()
            self._run_job(spec)
            if self.status.get("jobDeploymentStatus") != "Retrying":
                break  # an end, or Suspended
        self._after_finish(spec)

    def _past_deadline(self, spec: objs.Obj) -> bool:
        deadline, started = spec.get("activeDeadlineSeconds"), _parse(self.status.get("startTime"))
        if not deadline or started is None:
            return False
        return time.time() > started + int(deadline)

    def _suspend_requested(self) -> bool:
        return bool((self._current().get("spec") or {}).get("suspend"))

    def _run_job(self, spec: objs.Obj) -> None:
        job_id = self.status.get("jobId") or spec.get("jobId") or generated_name(self.name)
        cluster = self.status.get("rayClusterName") or generated_name(self.name)
        current = self.status.get("jobDeploymentStatus")
        self._write(
            jobDeploymentStatus="Initializing" if current in (None, "", "New") else current,
            jobId=job_id,
            rayClusterName=cluster,
            startTime=self.status.get("startTime") or objs.now(),
        )
        if self._get(RC_PLURAL, cluster) is None:
            try:
                self.api.call(
                    "create RayCluster",
                    self.api.custom.create_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    RC_PLURAL,
                    build_raycluster(self.rayjob, cluster),
                )
            except Exception as err:
                if status_code(err) != 409:
                    raise
            self.api.event(self.rayjob, "Created", f"Created RayCluster {self.namespace}/{cluster}")
        dashboard = self._wait_for_cluster(spec, cluster)
        if dashboard is None:
            return
        if not self._submit(spec, dashboard, job_id):
            return
        self._follow(spec, job_id, cluster)

    def _wait_for_cluster(self, spec: objs.Obj, cluster: str) -> str | None:
        """The dashboard URL once the RayCluster is ready; ``None`` when the RayJob ended meanwhile."""
        while True:
            if self._past_deadline(spec):
                self._fail(
                    "DeadlineExceeded", deadline_message(self.status["startTime"], int(spec["activeDeadlineSeconds"]))
                )
                return None
            if self._suspend_requested():
                self._suspend(None, cluster)
                return None
            rc = self._get(RC_PLURAL, cluster)
            if rc is not None and (rc.get("status") or {}).get("state") == "ready":
                url = default_endpoint_resolver(rc).dashboard_url
                self._write(
                    dashboardURL=url.split("://", 1)[-1],
                    rayClusterStatus={
                        k: v
                        for k, v in (rc.get("status") or {}).items()
                        if k in ("state", "head", "endpoints", "readyWorkerReplicas", "desiredWorkerReplicas")
                    },
                )
                return url
            self._sleep(self.poll_s)

    def _submit(self, spec: objs.Obj, dashboard: str, job_id: str) -> bool:
        from discord_ml_platform.jobs import job_client, submit_job

        entrypoint = FAILING_ENTRYPOINT if self.faults.job_fails else str(spec.get("entrypoint") or "")
        # Like the submitter pod's Job, retry for a while: a fresh head's job agent may not answer yet.
        give_up = time.monotonic() + SUBMIT_RETRY_S
        while True:
            try:
                self._client = self._client or job_client(
                    dashboard, objs.auth_mode({"spec": spec.get("rayClusterSpec") or {}})
                )
                try:
                    self._client.get_job_info(job_id)  # submitted already (a retry, an operator restart)
                except Exception:
                    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
                    submit_job(
                        self._client,
                        entrypoint,
                        runtime_env=runtime_env,
                        metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
                        submission_id=job_id,
                    )
                break
            except Exception as err:
                if time.monotonic() > give_up or self._past_deadline(spec):
                    self._fail("SubmissionFailed", f"failed to submit the Ray job: {str(err).splitlines()[0]}")
                    return False
                self._sleep(1.0)
        self.api.event(self.rayjob, "Submitted", f"Submitted Ray job {job_id} to {dashboard}")
        self._write(jobDeploymentStatus="Running", jobStatus=self.status.get("jobStatus") or "PENDING")
        return True

    def _follow(self, spec: objs.Obj, job_id: str, cluster: str) -> None:
        from discord_ml_platform.jobs import stop_job

        errors = 0
        while True:
            if self._past_deadline(spec):
                final = stop_job(self._client, job_id, wait_s=15)
                self._fail(
                    "DeadlineExceeded",
                    deadline_message(self.status["startTime"], int(spec["activeDeadlineSeconds"])),
                    job_status=final,
                )
                return
            if self._suspend_requested():
                self._suspend(job_id, cluster)
                return
            try:
                info = self._client.get_job_info(job_id)
                errors = 0
            except Exception as err:  # the head went away, or a hiccup
                errors += 1
                if errors * self.poll_s >= 30 or self._get(RC_PLURAL, cluster) is None:
                    self._fail("AppFailed", f"lost the Ray job {job_id}: {str(err).splitlines()[0]}")
                    return
                self._sleep(self.poll_s)
                continue
            status = str(info.status.value)
            job_info = {
                k: v
                for k, v in (("startTime", _ms_to_stamp(info.start_time)), ("endTime", _ms_to_stamp(info.end_time)))
                if v
            }
            if status in TERMINAL_JOB:
                if status == "SUCCEEDED":
                    self._write(
                        jobStatus=status,
                        message=info.message or "",
                        rayJobInfo=job_info,
                        jobDeploymentStatus="Complete",
                        endTime=objs.now(),
                        succeeded=int(self.status.get("succeeded") or 0) + 1,
                        failed=int(self.status.get("failed") or 0),
                    )
                    self.api.event(self.rayjob, "Completed", f"Ray job {job_id} succeeded")
                else:
                    self._fail(
                        "AppFailed", info.message or f"Ray job {job_id} {status}", job_status=status, job_info=job_info
                    )
                return
            if status != self.status.get("jobStatus"):
                self._write(jobStatus=status, message=info.message or "", rayJobInfo=job_info)
            self._sleep(self.poll_s)

    def _fail(
        self, reason: str, message: str, *, job_status: str | None = None, job_info: objs.Obj | None = None
    ) -> None:
        """End this attempt ``Failed``, or ``Retrying`` while ``status.failed`` stays within ``backoffLimit``.

        As KubeRay's ``checkBackoffLimitAndUpdateStatusIfNeeded``: one status update, so a client
        never sees a ``Failed`` that is then retried; ``DeadlineExceeded`` is never retried.
        """
        failed = int(self.status.get("failed") or 0) + 1
        limit = int((self.rayjob.get("spec") or {}).get("backoffLimit") or 0)
        retry = reason != "DeadlineExceeded" and failed < limit + 1
        self._write(
            jobDeploymentStatus="Retrying" if retry else "Failed",
            reason=reason,
            message=message,
            jobStatus=job_status,
            rayJobInfo=job_info,
            endTime=None if retry else objs.now(),
            failed=failed,
            succeeded=int(self.status.get("succeeded") or 0),
        )
        self.api.event(self.rayjob, reason, message, warning=True)
        if retry:
            self.api.event(
                self.rayjob,
                "Retrying",
                f"attempt {failed} of {limit + 1} failed ({reason}); retrying on a new RayCluster",
                warning=True,
            )

    def _retry(self) -> None:
        """KubeRay's ``Retrying``: delete the attempt's RayCluster, wait until it is gone, reset the attempt.

        The status goes back to ``New`` without ``rayClusterName``, ``dashboardURL``, ``jobId``,
        ``jobStatus``, ``reason``, ``message`` and ``startTime``: the next attempt picks a new cluster
        name, the same ``jobId`` when ``spec.jobId`` is set, and a new ``startTime`` (so
        ``activeDeadlineSeconds`` counts per attempt).
        """
        cluster = self.status.get("rayClusterName")
        if cluster:
            self._delete(RC_PLURAL, cluster)
            self.api.event(self.rayjob, "Deleted", f"Deleted RayCluster {self.namespace}/{cluster}: retrying the job")
            give_up = time.monotonic() + RETRY_CLUSTER_GONE_S
            while self._get(RC_PLURAL, cluster) is not None and time.monotonic() < give_up:
                self._current()  # the RayJob itself was deleted meanwhile: stop
                self._sleep(self.poll_s)
        self._client = None
        self._write(
            jobDeploymentStatus="New",
            clear=(
                "rayClusterName",
                "rayClusterStatus",
                "dashboardURL",
                "jobId",
                "jobStatus",
                "reason",
                "message",
                "rayJobInfo",
                "startTime",
            ),
        )

    def _suspend(self, job_id: str | None, cluster: str) -> None:
        from discord_ml_platform.jobs import stop_job

        self._write(jobDeploymentStatus="Suspending")
        final = stop_job(self._client, job_id, wait_s=15) if job_id and self._client is not None else None
        self._delete(RC_PLURAL, cluster)
        self._write(jobDeploymentStatus="Suspended", jobStatus=final, message="suspended by spec.suspend")
        self.api.event(self.rayjob, "Suspended", f"Deleted RayCluster {self.namespace}/{cluster}: RayJob suspended")

    def _after_finish(self, spec: objs.Obj) -> None:
        if self.status.get("jobDeploymentStatus") not in TERMINAL_DEPLOYMENT or not spec.get(
            "shutdownAfterJobFinishes"
        ):
            return
        ended = _parse(self.status.get("endTime")) or time.time()
        self._sleep(ended + int(spec.get("ttlSecondsAfterFinished") or 0) - time.time())
        if os.environ.get(DELETE_RAYJOB_ENV, "").strip().lower() == "true":
            self.api.event(self.rayjob, "Deleted", f"Deleting RayJob {self.key}: job finished, TTL passed")
            self._delete(PLURAL, self.name)
        elif self.status.get("rayClusterName"):
            cluster = self.status["rayClusterName"]
            self.api.event(
                self.rayjob, "Deleted", f"Deleted RayCluster {self.namespace}/{cluster}: job finished, TTL passed"
            )
            self._delete(RC_PLURAL, cluster)


class RayJobController:
    """Watches RayJobs in all namespaces and runs a :class:`RayJobReconciler` per uid.

    Args:
        api: The operator's API calls.
        faults_source: Returns the global operator faults.
        poll_s: Poll interval of each reconciler.
    """

    def __init__(self, api: OperatorApi, faults_source: Callable[[], OperatorFaults], poll_s: float = 0.5) -> None:
        self.api = api
        self.faults_source = faults_source
        self.poll_s = poll_s
        self._reconcilers: dict[str, RayJobReconciler] = {}
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, objs.Obj] | None] = queue.Queue()
        self._watch = ResourceWatch(
            "operator-rayjobs",
            api.custom.list_cluster_custom_object,
            lambda kind, obj: self._inbox.put((kind, obj)),
            args=(GROUP, VERSION, PLURAL),
        )
        self._dispatcher = threading.Thread(target=self._dispatch, name="sandbox-operator-rayjobs", daemon=True)

    @property
    def synced(self) -> threading.Event:
        """Set after the first list of RayJobs."""
        return self._watch.synced

    @property
    def active(self) -> list[str]:
        """``namespace/name`` of every RayJob being reconciled now."""
        with self._lock:
            return sorted(r.key for r in self._reconcilers.values() if r._thread.is_alive())

    def start(self) -> RayJobController:
        """Start watching and dispatching."""
        self._dispatcher.start()
        self._watch.start()
        return self

    def stop(self, timeout_s: float = 30) -> None:
        """Stop watching and every reconciler (the Ray clusters are the RayCluster side's to stop)."""
        self._watch.stop()
        self._inbox.put(None)
        if self._dispatcher.is_alive():
            self._dispatcher.join(5)
        with self._lock:
            reconcilers = list(self._reconcilers.values())
            self._reconcilers.clear()
        for rec in reconcilers:
            rec.cancel()
        for rec in reconcilers:
            rec.join(timeout_s)

    def _dispatch(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            kind, obj = item
            try:
                if kind == "LIST":
                    seen = {i["metadata"]["uid"] for i in obj["items"]}
                    for uid in [u for u in list(self._reconcilers) if u not in seen]:
                        self._forget(uid)
                    for item_obj in obj["items"]:
                        self._observe(item_obj)
                elif kind == "DELETED" or obj["metadata"].get("deletionTimestamp"):
                    self._forget(obj["metadata"]["uid"])
                else:
                    self._observe(obj)
            except Exception:  # one bad object must not stop the operator
                log.exception("sandbox operator: handling RayJob %s failed", kind)

    def _observe(self, rayjob: objs.Obj) -> None:
        uid = rayjob["metadata"]["uid"]
        if rayjob["metadata"].get("deletionTimestamp"):
            self._forget(uid)
            return
        with self._lock:
            if uid in self._reconcilers:
                return  # its thread re-reads the RayJob (suspend) on every step
            rec = RayJobReconciler(self.api, rayjob, operator_faults_for(rayjob, self.faults_source()), self.poll_s)
            self._reconcilers[uid] = rec
        log.info("sandbox operator: reconciling RayJob %s", rec.key)
        rec.start()

    def _forget(self, uid: str) -> None:
        with self._lock:
            rec = self._reconcilers.pop(uid, None)
        if rec is not None:
            rec.cancel()
