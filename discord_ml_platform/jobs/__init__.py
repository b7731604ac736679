"""Ray Jobs: submit, follow logs, wait, stop, sample resource use; Pipes message framing."""

from discord_ml_platform.jobs.client import (
    JobOutcome,
    LogFollower,
    RayJobError,
    job_client,
    stop_job,
    submit_job,
    wait_for_job,
)
from discord_ml_platform.jobs.pipes_protocol import emit_custom, emit_pipes_message, find_pipes_message
from discord_ml_platform.jobs.usage import UsageSample, UsageSampler, read_usage

__all__ = [
    "JobOutcome",
    "LogFollower",
    "RayJobError",
    "UsageSample",
    "UsageSampler",
    "emit_custom",
    "emit_pipes_message",
    "find_pipes_message",
    "job_client",
    "read_usage",
    "stop_job",
    "submit_job",
    "wait_for_job",
]
