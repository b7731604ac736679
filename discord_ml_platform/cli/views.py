"""Clusters as the commands find and list them: lookup by name (with the CLI's errors), list columns.

The rows themselves (owner, hardware, price from the catalog, age, expiry) are the core's:
:mod:`discord_ml_platform.fleet`, which X-Ray shows too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord_ml_platform.cli.errors import CliError, UsageProblem

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend, ClusterInfo

LIST_COLUMNS = (
    ("name", "NAME"),
    ("namespace", "NAMESPACE"),
    ("owner", "OWNER"),
    ("gpus", "GPUS"),
    ("workers", "WORKERS"),
    ("status", "STATUS"),
    ("age", "AGE"),
    ("expires", "EXPIRES"),
    ("price", "$/HOUR"),
)


def find_cluster(backend: ClusterBackend, name: str, namespace: str | None = None) -> ClusterInfo:
    """The cluster called ``name`` (in ``namespace`` when given, else in whichever namespace holds it).

    Raises:
        CliError: when there is none (exit 1).
        UsageProblem: when several namespaces hold one and no namespace was given.
    """
    from discord_ml_platform.spec.labels import CLUSTER, label_value

    matches = [i for i in backend.list({CLUSTER: label_value(name)}) if i.handle.name == name]
    if not matches:  # created without our labels (e.g. by kubectl): look at everything
        matches = [i for i in backend.list() if i.handle.name == name]
    if namespace:
        matches = [i for i in matches if i.handle.namespace == namespace]
    if not matches:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise CliError(
            f"no cluster named {name!r}{where} on backend {backend.name}",
            hint="list the clusters with `dmp cluster list -A`",
        )
    if len(matches) > 1:
        spaces = ", ".join(sorted(i.handle.namespace for i in matches))
        raise UsageProblem(f"clusters named {name!r} exist in several namespaces ({spaces})", hint="pass --namespace")
    return matches[0]
