"""A Dagster run whose step stops at a chosen moment of getting its cluster, to be killed there (tests only).

Usage: ``python killable_step.py PHASE [KUBECONFIG]``; without a kubeconfig the local backend is used.

PHASE ``create``: the create request went through (the cluster exists) but the call has not returned
yet, as when the server commits and its answer is lost. ``wait``: waiting for the cluster to be ready.
The step prints ``AT <PHASE>`` there and blocks; the test sends SIGTERM (Dagster's termination: the
run worker maps it to an interrupt) or SIGKILL (nothing of ours runs).
"""

import sys
import time

import dagster as dg
from dagster._utils.interrupts import setup_interrupt_handlers

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.local import LocalBackend
from resources import RayClusterResource


def block(phase: str) -> None:
    print(f"AT {phase}", flush=True)
    time.sleep(300)


@dg.asset
def needs_a_cluster(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource) -> None:
    ray_cluster.get_cluster(context)


def main() -> None:
    phase = sys.argv[1]
    kubeconfig = sys.argv[2] if len(sys.argv) > 2 else None
    backend_class: type = KubeRayBackend if kubeconfig else LocalBackend
    if phase == "create":
        create = backend_class.create

        def created_but_not_returned(self, spec):  # type: ignore[no-untyped-def]
            create(self, spec)
            block("create")

        backend_class.create = created_but_not_returned
    else:
        wait_ready = backend_class.wait_ready

        def waiting(self, handle, timeout_s, on_phase=None):  # type: ignore[no-untyped-def]
            block("wait")
            return wait_ready(self, handle, timeout_s, on_phase)

        backend_class.wait_ready = waiting
    setup_interrupt_handlers()  # as Dagster's run worker does: SIGTERM interrupts the run like SIGINT
    resource = RayClusterResource(backend="kuberay" if kubeconfig else "local", kubeconfig=kubeconfig, workers=0,
                                  head_memory="1Gi", owner="tests")
    result = dg.materialize([needs_a_cluster], resources={"ray_cluster": resource},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    print("RUN", "SUCCESS" if result.success else "FAILED", flush=True)


if __name__ == "__main__":
    main()
