"""The cluster resource's teardown misses nothing: a create whose answer was lost, and deletions
interrupted by a second interrupt, still end with every cluster gone (real local clusters; the
backend subclasses only inject the fault)."""

import dagster as dg
import pytest

from discord_ml_platform.backends import ClusterEndpoints, ClusterError, ClusterHandle
from discord_ml_platform.backends.local import LocalBackend
from resources import RayClusterResource, RunningCluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


class AnswerLost(LocalBackend):
    """Creates the cluster, then fails as a create does whose answer the network lost."""

    def create(self, spec):  # type: ignore[no-untyped-def]
        super().create(spec)
        raise ClusterError("connection reset after the create was committed")


class FirstDeleteInterrupted(LocalBackend):
    """The first delete is interrupted before it starts (a second Ctrl-C during teardown)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def delete(self, handle: ClusterHandle, timeout_s: float = 60) -> None:
        self.calls.append(handle.name)
        if len(self.calls) == 1:
            raise KeyboardInterrupt
        super().delete(handle, timeout_s)


def resource_on(backend: LocalBackend) -> RayClusterResource:
    resource = RayClusterResource(workers=0, head_memory="1Gi", owner="tests")
    resource._backend = backend  # the backend the resource would open, with the fault injected
    return resource


def test_a_create_committed_but_answered_with_an_error_is_deleted_at_teardown() -> None:
    resource = resource_on(AnswerLost())
    with pytest.raises(ClusterError, match="after the create was committed"):
        resource.get_cluster(dg.build_asset_context(), resource.spec_for_run("0f1e2d3c-lost-answer"))
    assert [i.handle.name for i in LocalBackend().list()] == ["dmp-0f1e2d3clost"]  # it does exist
    resource.delete_all()
    assert LocalBackend().list() == []


def test_teardown_deletes_every_cluster_through_a_second_interrupt() -> None:
    backend = FirstDeleteInterrupted()
    resource = resource_on(backend)
    for run in ("aaaa1111-run", "bbbb2222-run"):
        spec = resource.spec_for_run(run)
        handle = backend.create(spec)  # no need to wait for ready: deletion is what is tested
        resource._clusters[spec.name] = RunningCluster(spec, handle, ClusterEndpoints("", ""), "local", 0.0, 0.0)
    with pytest.raises(KeyboardInterrupt):  # the interrupt is not swallowed, only deferred
        resource.delete_all()
    first, second = sorted(resource.spec_for_run(run).name for run in ("aaaa1111-run", "bbbb2222-run"))
    assert backend.calls == [first, first, second]  # the interrupted one once more, then the other
    assert LocalBackend().list() == []
