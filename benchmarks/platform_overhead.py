"""Platform overhead: a trivial Ray job through the Dagster pipeline vs raw Ray, in one run.

Baseline (raw): ``ray start --head --block`` as a process group, poll the dashboard, submit the
same job with ``JobSubmissionClient``, poll until it ends, stop the group (SIGTERM, then SIGKILL
after the same short grace the platform uses; ``ray stop`` would kill every Ray on the machine).

Platform: the ``platform_smoke_test`` Dagster job executed in process: ``ClusterSpec`` →
local backend create → wait_ready with phases → Pipes-speaking Ray job with live log streaming
and resource sampling → teardown.

Prints each repetition and the ratio of medians (goal: under 1.3x).

    python benchmarks/platform_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ENTRYPOINT = "python -m discord_ml_platform.jobs.smoke"


def raw_ray_run(temp_root: Path) -> float:
    """Seconds for raw ray start + submit + wait + stop."""
    from ray.job_submission import JobSubmissionClient

    from discord_ml_platform.backends.local import ray_environment
    from discord_ml_platform.backends.processes import free_ports, terminate_tree

    started = time.perf_counter()
    gcs, dashboard, client, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    temp_dir = tempfile.mkdtemp(prefix="raw-", dir=temp_root)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--dashboard-port", str(dashboard),
           "--dashboard-host", "127.0.0.1", "--ray-client-server-port", str(client),
           "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
           "--num-cpus", "1", "--object-store-memory", str(256 * 2**20), "--temp-dir", temp_dir]
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ray_environment("disabled"), start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/jobs/", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        jobs = JobSubmissionClient(url)
        job_id = jobs.submit_job(entrypoint=ENTRYPOINT)
        while not jobs.get_job_status(job_id).is_terminal():
            time.sleep(0.25)
        assert jobs.get_job_status(job_id).value == "SUCCEEDED", jobs.get_job_logs(job_id)
    finally:
        terminate_tree([head.pid], marker=temp_dir, grace_s=2.0)
    return time.perf_counter() - started


def platform_run(instance, job) -> float:
    """Seconds for the platform_smoke_test Dagster job executed in process.

    The Dagster instance and the code location are loaded once, outside the timing: a deployment
    has a persistent instance and a loaded code server.
    """
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance)
    assert result.success
    return time.perf_counter() - started


def main() -> None:
    """Alternate raw and platform runs; print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    temp_root = Path(tempfile.mkdtemp(prefix="dmpb-", dir="/tmp" if os.path.isdir("/tmp") else None))
    os.environ["DMP_RAY_TEMP_ROOT"] = str(temp_root)
    os.environ["DMP_LOCAL_STATE_DIR"] = str(temp_root / "state")
    import dagster as dg

    from pipelines.definitions import build_definitions

    job = build_definitions().resolve_job_def("platform_smoke_test")

    raw, platform = [], []
    with dg.instance_for_test() as instance:
        for repeat in range(args.repeats):
            raw.append(raw_ray_run(temp_root))
            platform.append(platform_run(instance, job))
            print(f"run {repeat + 1}: raw ray {raw[-1]:.2f}s, platform {platform[-1]:.2f}s", flush=True)
    raw_median, platform_median = statistics.median(raw), statistics.median(platform)
    print(f"raw ray start + Jobs API submit + stop: median {raw_median:.2f}s")
    print(f"Dagster pipeline on the local backend:  median {platform_median:.2f}s")
    print(f"overhead ratio: {platform_median / raw_median:.3f}x (goal < 1.3x)")


if __name__ == "__main__":
    main()
