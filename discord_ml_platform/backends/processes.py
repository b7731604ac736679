"""Start and stop process trees that we own, by PID and process group, never by name.

``ray stop`` or ``pkill raylet`` end every Ray on the machine, other users' and other runs'
included; everything here acts only on processes whose PIDs we recorded, their descendants, and
processes whose command line names a directory that belongs to us.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterable
from pathlib import Path

import psutil


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    The sockets are held open until all ports are chosen so the kernel hands out distinct ones.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_accepts(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds now."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_naming(marker: str) -> list[psutil.Process]:
    """Processes whose command line contains ``marker`` (a directory only we use)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(marker in part for part in cmdline):
            found.append(proc)
    return found


def live_command_lines(marker: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Command lines (cut to 160 characters) of live, non-zombie processes naming ``marker``
    but none of ``exclude``: what a leak check reports."""
    found = []
    for proc in processes_naming(marker):
        try:
            cmdline = " ".join(proc.cmdline())
            if proc.status() != psutil.STATUS_ZOMBIE and not any(e in cmdline for e in exclude):
                found.append(cmdline[:160])
        except psutil.Error:
            continue
    return found


def process_tree(pids: Iterable[int], marker: str | None = None) -> list[psutil.Process]:
    """The processes ``pids``, all their descendants, and those whose command line names ``marker``."""
    tree: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree[root.pid] = root
            for child in root.children(recursive=True):
                tree[child.pid] = child
        except psutil.Error:
            continue
    if marker:
        for proc in processes_naming(marker):
            tree.setdefault(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    tree.setdefault(child.pid, child)
    tree.pop(os.getpid(), None)  # never ourselves, even if our command line names the marker
    return list(tree.values())


def terminate_tree(pids: Iterable[int], marker: str | None = None, grace_s: float = 5.0) -> int:
    """SIGTERM a process tree (and its process groups), then SIGKILL what outlives ``grace_s``.

    Returns the number of processes that had to be killed with SIGKILL.
    """
    pids = list(pids)
    procs = process_tree(pids, marker)
    for pid in pids:  # the groups we created with start_new_session=True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    # A graceful stop may spawn or orphan more (raylet restarting a worker): look once more.
    alive += [p for p in process_tree([], marker) if p not in alive]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(alive)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file, or '' when it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
