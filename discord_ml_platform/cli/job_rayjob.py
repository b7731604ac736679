"""``dmp job submit --rayjob``: the job as a KubeRay RayJob whose cluster KubeRay creates and deletes.

The cluster is the platform's (:meth:`~discord_ml_platform.platform.Platform.cluster_spec`: catalog,
images, policy); the RayJobs come from the backend's capability
(:class:`~discord_ml_platform.backends.rayjobs.RayJobCapable`), and the job is followed by the
platform's job runner like any other (see :mod:`discord_ml_platform.cli.job_follow`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from discord_ml_platform.cli.backend_choice import using_backend
from discord_ml_platform.cli.errors import CliError, UsageProblem
from discord_ml_platform.cli.job_follow import follow, outcome_line
from discord_ml_platform.cli.output import OutputFormat, print_data, stderr

if TYPE_CHECKING:
    from discord_ml_platform.backends.rayjobs import RayJobOptions
    from discord_ml_platform.jobs.events import JobEvent, JobSubmitted, Workload
    from discord_ml_platform.jobs.runner import JobRunner
    from discord_ml_platform.platform import Platform
    from discord_ml_platform.spec import ClusterSpec


def rayjob_options(ttl_seconds: int, deadline_seconds: int | None) -> RayJobOptions:
    """``--ttl-seconds`` and ``--deadline-seconds`` as RayJob options (range errors name the flags)."""
    from pydantic import ValidationError

    from discord_ml_platform.backends.rayjobs import RayJobOptions
    from discord_ml_platform.cli.errors import validation_lines

    try:
        return RayJobOptions(ttl_seconds_after_finished=ttl_seconds, active_deadline_seconds=deadline_seconds)
    except ValidationError as err:
        flags = {"ttl_seconds_after_finished": "--ttl-seconds", "active_deadline_seconds": "--deadline-seconds"}
        raise UsageProblem("\n".join(validation_lines(err, flags))) from None


def submit_rayjob(
    platform: Platform,
    runner: JobRunner,
    name: str,
    namespace: str,
    workload: Workload,
    options: RayJobOptions,
    *,
    hardware: dict[str, Any] | None = None,
    dry_run: bool,
    no_wait: bool,
    output: OutputFormat,
    backend: str | None,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """``dmp job submit --rayjob``: a RayJob whose cluster KubeRay creates for the job and deletes after
    it, followed through ``runner`` (built with ``stop_on_exit=False``: Ctrl-C detaches and KubeRay
    keeps the job).

    The cluster is shaped by ``hardware`` (``ClusterSpec`` fields of the hardware flags, see
    :func:`~discord_ml_platform.cli.hardware_flags.hardware_fields`; head only by default) and checked
    by the platform like any other; ``--dry-run`` prints the RayJob as JSON with ``-o json``, else YAML.

    Raises:
        UsageProblem: an invalid flag (named), or a GPU pool without a worker to hold its GPUs.
    """
    import dataclasses

    from discord_ml_platform.backends.rayjobs import rayjob_submission_id
    from discord_ml_platform.cli.hardware_flags import SPEC_FLAGS, build_spec

    fields = {**(hardware or {}), "name": name, "namespace": namespace}
    spec = build_spec(platform, fields, flags={**SPEC_FLAGS, "name": "--cluster"})
    _refuse_gpus_without_workers(platform, spec)
    workload = dataclasses.replace(workload, submission_id=workload.submission_id or rayjob_submission_id(name))
    if dry_run:
        _print_rayjob(platform, spec, workload, options, output)
        return
    scripted = output in (OutputFormat.json, OutputFormat.yaml)
    with using_backend(backend, kubeconfig, context, platform, default=("kuberay", "--rayjob")) as cluster_backend:
        from discord_ml_platform.backends.rayjobs import RayJobCapable
        from discord_ml_platform.jobs.runner import RayJobTarget

        if not isinstance(cluster_backend, RayJobCapable):
            raise UsageProblem(
                f"--rayjob needs a backend whose cluster manager runs RayJobs; backend {cluster_backend.name} does not",
                hint="use --backend kuberay (a Kubernetes cluster with the KubeRay operator), or drop --rayjob",
            )
        target = RayJobTarget(cluster_backend.rayjobs(namespace), spec, options)
        import ray.job_submission  # noqa: F401 - slow to import: not while the job's short TTL runs

        if no_wait:
            created = _create_rayjob(runner.run(target, workload))
            if scripted:
                print_data({"rayjob": name, "namespace": namespace, "job_id": created.job_id}, output)
            else:
                print(name, flush=True)
            return
        result = follow(
            runner.run(target, workload),
            sys.stderr if scripted else sys.stdout,
            on_submitted=lambda _: stderr().print(
                f"[dim]created RayJob {namespace}/{name}; following it (Ctrl-C detaches, KubeRay keeps it)[/]"
            ),
            detach=lambda _: (
                f"RayJob {namespace}/{name}",
                f"delete it with `kubectl delete rayjob -n {namespace} {name}`",
            ),
            timeout_s=runner.job_timeout_s,
        )
    if scripted:
        print_data(
            {
                "rayjob": name,
                "namespace": namespace,
                "job_id": result.job_id,
                "deployment_status": result.deployment_status,
                "status": result.status,
                "reason": result.reason,
                "message": result.message,
            },
            output,
        )
    else:
        stderr().print(outcome_line(result))
    if not result.succeeded:
        raise typer.Exit(1)


def _refuse_gpus_without_workers(platform: Platform, spec: ClusterSpec) -> None:
    """A GPU pool's GPUs sit on its workers (the head has none): a head-only RayJob on one would run on no GPU.

    Refused rather than guessed (one worker? the autoscaler?), so the user says which.
    """
    if platform.catalog.get(spec.gpu_type).has_gpus and max(spec.workers, spec.max_workers or 0) == 0:
        raise UsageProblem(
            f"--workers: the {spec.gpu_type!r} pool's GPUs are on workers, and this cluster has none (got 0)",
            hint=f"add --workers 1 (or more) to run on {spec.gpu_type} GPUs; the head node holds no GPU",
        )


def _create_rayjob(events: Generator[JobEvent, None, None]) -> JobSubmitted:
    """Run the runner's RayJob mode up to the creation of the RayJob, then stop following it.

    The runner creates the RayJob before its first event; closing the events there (the runner was
    built with ``stop_on_exit=False``) leaves the RayJob to KubeRay.
    """
    from discord_ml_platform.jobs.events import JobSubmitted

    with contextlib.closing(events):
        for event in events:
            if isinstance(event, JobSubmitted):
                return event
    raise CliError("the job runner ended before the RayJob was created")


def _print_rayjob(
    platform: Platform, spec: ClusterSpec, workload: Workload, options: RayJobOptions, output: OutputFormat
) -> None:
    """``--dry-run``: the RayJob the runner would create, rendered with the platform's catalog and policy.

    JSON with ``-o json``, YAML otherwise (as ``dmp cluster create --dry-run``).
    """
    from discord_ml_platform.cli.cluster_output import write_manifests
    from discord_ml_platform.spec.render import render_rayjob

    manifest = render_rayjob(
        spec,
        entrypoint=workload.entrypoint,
        runtime_env=dict(workload.runtime_env) or None,
        submission_id=workload.submission_id,
        job_metadata=dict(workload.metadata),
        shutdown_after_job_finishes=options.shutdown_after_job_finishes,
        ttl_seconds_after_finished=options.ttl_seconds_after_finished,
        active_deadline_seconds=options.active_deadline_seconds,
        backoff_limit=options.backoff_limit,
        catalog=platform.catalog,
        policy=platform.policy,
        created_at=datetime.now(UTC),
    )
    write_manifests([manifest], output)
