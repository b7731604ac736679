"""A trivial Ray job that speaks Dagster Pipes: the platform's smoke test and overhead benchmark.

Run as ``python -m discord_ml_platform.jobs.smoke``. It runs ``tasks`` Ray tasks, prints a line per
task, and reports a materialization with the sum it computed. Outside Dagster (the raw baseline of
the overhead benchmark) Pipes is a no-op and the defaults apply.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class SmokeParams(BaseModel):
    """What the smoke job does."""

    model_config = ConfigDict(extra="forbid")

    tasks: int = Field(default=4, ge=1, le=10_000, description="Trivial Ray tasks to run (1-10000).")


def square(x: int) -> int:
    """The task body: trivial on purpose."""
    return x * x


def main() -> None:
    """Entry point of the Ray job."""
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import ray

        in_dagster = DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
        params = SmokeParams.model_validate(dict(pipes.extras) if in_dagster else {})
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
        remote_square = ray.remote(num_cpus=0.25)(square)
        results = ray.get([remote_square.remote(i) for i in range(params.tasks)])
        for i, value in enumerate(results):
            print(f"smoke task {i} -> {value}", flush=True)
        pipes.log.info(f"computed {params.tasks} squares")
        pipes.report_asset_materialization(metadata={"sum_of_squares": sum(results), "tasks": params.tasks})


if __name__ == "__main__":
    main()
