"""Container logs of the sandbox's pods: what a kubelet keeps and the API server serves as ``pods/log``.

The sandbox's "kubelet" (the local operator) writes here; the API server reads from here, so the two
may run in different processes as long as they share the directory. Per container there is either a
live source (the path of a running local Ray process's log file) or written text, plus the log of the
previous (terminated) container, as a kubelet keeps one restart's worth::

    <root>/<namespace>/<pod>/<container>/source      path of a live log file
    <root>/<namespace>/<pod>/<container>/current.log
    <root>/<namespace>/<pod>/<container>/previous.log
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ApiError


class PodLogs:
    """Container logs under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _dir(self, namespace: str, pod: str, container: str) -> Path:
        return self.root / namespace / pod / container

    def link(self, namespace: str, pod: str, container: str, source: str | Path) -> None:
        """The container's log is the file at ``source`` (a running process's output)."""
        folder = self._dir(namespace, pod, container)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "source").write_text(str(source))

    def write(self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False) -> None:
        """Set the current (or the previous, terminated) container's log."""
        folder = self._dir(namespace, pod, container)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("previous.log" if previous else "current.log")).write_text(text)

    def read(
        self, namespace: str, pod: str, container: str, *, previous: bool = False, tail_lines: int | None = None
    ) -> str:
        """The log as ``GET .../pods/{pod}/log`` answers it.

        Raises:
            ApiError: 400 as a real API server answers, when the container has no (previous) log.
        """
        folder = self._dir(namespace, pod, container)
        text: str | None = None
        if previous:
            path = folder / "previous.log"
            if not path.exists():
                raise ApiError(
                    "BadRequest", f'previous terminated container "{container}" in pod "{pod}" not found', code=400
                )
            text = path.read_text(errors="replace")
        elif (folder / "source").exists():
            source = Path((folder / "source").read_text())
            text = source.read_text(errors="replace") if source.exists() else ""
        elif (folder / "current.log").exists():
            text = (folder / "current.log").read_text(errors="replace")
        if text is None:
            raise ApiError(
                "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating', code=400
            )
        if tail_lines is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
        return text

    def forget(self, namespace: str, pod: str) -> None:
        """Drop a deleted pod's logs."""
        import shutil

        shutil.rmtree(self.root / namespace / pod, ignore_errors=True)
