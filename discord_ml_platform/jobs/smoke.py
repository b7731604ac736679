"""A trivial Ray job that speaks Dagster Pipes: the platform's smoke test and overhead benchmark.

Run as ``python -m discord_ml_platform.jobs.smoke``. It runs ``tasks`` Ray tasks, prints a line per
task, optionally waits for a file to appear (so tests can observe a log line while the job still
runs), and reports a materialization with the sum it computed.

Extras: ``tasks``; ``release_file`` (wait for it); ``fail`` (always fail); ``fail_once_marker``
(fail unless that file exists, creating it first: the first attempt fails, a retry succeeds).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    """The task body: trivial on purpose."""
    return x * x


def fail_once(marker: str | None) -> None:
    """Fail unless ``marker`` exists, creating it first: this attempt fails, the next one passes."""
    if not marker or Path(marker).exists():
        return
    Path(marker).touch()
    print("smoke job failing its first attempt", flush=True)
    raise RuntimeError("smoke job fails its first attempt")


def main() -> None:
    """Entry point of the Ray job."""
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import ray

        # Outside Dagster (e.g. the raw baseline of the overhead benchmark) Pipes is a no-op
        # whose extras are mocks: use the defaults.
        extras = dict(pipes.extras) if DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ else {}
        tasks = int(extras.get("tasks") or 4)
        release_file = extras.get("release_file")
        fail = bool(extras.get("fail", False))
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
        remote_square = ray.remote(num_cpus=0.25)(square)
        results = ray.get([remote_square.remote(i) for i in range(tasks)])
        for i, value in enumerate(results):
            print(f"smoke task {i} -> {value}", flush=True)
        pipes.log.info(f"computed {tasks} squares")
        if release_file:
            print("smoke job waiting for release", flush=True)
            deadline = time.monotonic() + 120
            while not Path(release_file).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"release file {release_file} never appeared")
                time.sleep(0.05)
        if fail:
            raise RuntimeError("smoke job asked to fail")
        fail_once(extras.get("fail_once_marker"))
        pipes.report_asset_materialization(metadata={"sum_of_squares": sum(results), "tasks": tasks})


if __name__ == "__main__":
    main()
