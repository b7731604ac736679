"""A Pipes-speaking smoke job that misbehaves on request: the tests' fault injection, not product code.

Submitted with ``runtime_env={"working_dir": <this directory>}`` and ``python faulty_smoke.py`` (see
:data:`drivers.FAULTY_SMOKE`), so it runs wherever the platform's own smoke job runs. Extras:
``tasks``; ``release_file`` (print a line, then wait for the file); ``fail`` (always fail);
``fail_once_marker`` (fail unless that file exists, creating it first: the first attempt fails, a
retry succeeds).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def main() -> None:
    """Entry point of the Ray job."""
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import ray

        extras = dict(pipes.extras) if DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ else {}
        tasks = int(extras.get("tasks") or 4)
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
        results = ray.get([ray.remote(num_cpus=0.25)(lambda x: x * x).remote(i) for i in range(tasks)])
        for i, value in enumerate(results):
            print(f"smoke task {i} -> {value}", flush=True)
        print("\x1b[36m(colour check)\x1b[0m a coloured line", flush=True)  # as Ray colours its prefixes
        pipes.log.info(f"computed {tasks} squares")
        release_file = extras.get("release_file")
        if release_file:
            print("smoke job waiting for release", flush=True)
            deadline = time.monotonic() + 120
            while not Path(release_file).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"release file {release_file} never appeared")
                time.sleep(0.05)
        if extras.get("fail"):
            raise RuntimeError("smoke job asked to fail")
        marker = extras.get("fail_once_marker")
        if marker and not Path(marker).exists():
            Path(marker).touch()
            print("smoke job failing its first attempt", flush=True)
            raise RuntimeError("smoke job fails its first attempt")
        pipes.report_asset_materialization(metadata={"sum_of_squares": sum(results), "tasks": tasks})


if __name__ == "__main__":
    main()
