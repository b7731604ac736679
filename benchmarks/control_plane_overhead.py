"""What the Kubernetes control plane adds to a cluster's lifecycle: kuberay (sandbox) versus local.

Each repetition times, in the same process and on the same machine:

* ``local``: ``LocalBackend`` create -> wait_ready -> delete of a head-only cluster (the Ray head's
  own start and stop);
* ``kuberay``: the same cluster through ``KubeRayBackend`` -> sandbox API server -> local KubeRay
  operator (which starts the very same local head), i.e. manifest rendering, API calls with
  retries, the operator's reconcile, watches, status, and deletion with its finalizer.

The difference of the medians is the control plane's overhead::

    python benchmarks/control_plane_overhead.py --repetitions 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def lifecycle(backend, name: str) -> tuple[float, float, float]:
    """``(create+ready seconds, delete seconds, total)`` of one head-only cluster."""
    from discord_ml_platform.spec import ClusterSpec

    spec = ClusterSpec(name=name, head_memory="1Gi", owner="benchmark")
    started = time.perf_counter()
    handle = backend.create(spec)
    try:
        backend.wait_ready(handle, 180)
        ready = time.perf_counter()
    finally:
        backend.delete(handle, timeout_s=120)
    done = time.perf_counter()
    return ready - started, done - ready, done - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print both medians and the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", "-n", type=int, default=3, help="lifecycles per backend (default 3)")
    args = parser.parse_args(argv)

    from discord_ml_platform.backends.kuberay import KubeRayBackend
    from discord_ml_platform.backends.local import LocalBackend
    from discord_ml_platform.sandbox.runner import KubeRaySandbox

    # Short root: Ray's Unix socket paths below it must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="dmpb-", dir="/tmp" if os.path.isdir("/tmp") else None))
    results: dict[str, list[tuple[float, float, float]]] = {"local": [], "kuberay": []}
    try:
        local = LocalBackend(state_dir=root / "local", temp_root=root / "r")
        with KubeRaySandbox(root / "sandbox", temp_root=root / "k") as sandbox, \
                KubeRayBackend(sandbox.kubeconfig) as kuberay:
            for i in range(args.repetitions):
                # Interleaved, first one then the other, so load drifts and warm caches affect both alike.
                order = [("local", local), ("kuberay", kuberay)]
                for name, backend in order if i % 2 == 0 else reversed(order):
                    results[name].append(lifecycle(backend, f"bench-{name}-{i}"))
                print(f"rep {i + 1}/{args.repetitions}: local {results['local'][-1][2]:.2f}s, "
                      f"kuberay {results['kuberay'][-1][2]:.2f}s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    print(f"\n{'backend':<10}{'ready (s)':>12}{'delete (s)':>12}{'total (s)':>12}   (medians of {args.repetitions})")
    for name in ("local", "kuberay"):
        print(f"{name:<10}{median(name, 0):>12.2f}{median(name, 1):>12.2f}{median(name, 2):>12.2f}")
    local_total, kuberay_total = median("local", 2), median("kuberay", 2)
    print(f"\ncontrol-plane overhead: {kuberay_total - local_total:+.2f}s per lifecycle "
          f"(ready {median('kuberay', 0) - median('local', 0):+.2f}s, "
          f"delete {median('kuberay', 1) - median('local', 1):+.2f}s), "
          f"ratio {kuberay_total / local_total:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
