"""Kubeconfig files that point the official ``kubernetes`` client at a sandbox.

The file is plain YAML with one cluster (a plain ``http://`` server URL), one bearer-token user
and one context named ``dmp-sandbox``, so ``kubectl`` and
``kubernetes.config.load_kube_config(config_file=..., context="dmp-sandbox")`` both work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONTEXT = "dmp-sandbox"


def kubeconfig_dict(
    server_url: str,
    token: str,
    namespace: str = "default",
    context: str = CONTEXT,
    user: str | None = None,
) -> dict[str, Any]:
    """Build a kubeconfig as a dict.

    Args:
        server_url: e.g. ``http://127.0.0.1:40123``.
        token: Bearer token the client sends.
        namespace: Default namespace of the context.
        context: Name of the context (also used for the cluster).
        user: Name of the user entry; ``<context>-user`` by default.

    Returns:
        The kubeconfig, ready for ``yaml.safe_dump`` or ``load_kube_config_from_dict``.
    """
    user = user or f"{context}-user"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user, "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(path: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``config`` to ``path`` (mode 0600, parent directories created).

    Args:
        path: Destination file.
        config: A kubeconfig dict, e.g. from :func:`kubeconfig_dict`.

    Returns:
        The path written.
    """
    import yaml  # local import: only needed when a file is written

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)  # it holds a bearer token
    tmp.replace(out)
    return out
