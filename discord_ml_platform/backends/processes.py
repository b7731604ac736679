"""Start and stop process trees that we own, by PID and process group, never by name.

``ray stop`` or ``pkill raylet`` end every Ray on the machine, other users' and other runs'
included; everything here acts only on processes whose PIDs we recorded, their descendants, and
processes whose command line names a directory that belongs to us.

A PID alone does not name a process for long: once ours exits, the kernel may hand the number to
any later process. A PID is therefore kept with its start time (:func:`start_time`) and a process
counts as ours only while both match (:func:`owned_process`); a group is signalled only through a
leader that is still ours, or while no process holds the leader's number at all (then only our
own group can still hold it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

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


# How far two readings of one process's start time may differ. psutil derives it from the boot
# time, which the kernel reports in whole seconds and may shift when the clock is stepped; a PID
# cannot cycle through the whole PID space and come back within this window.
START_TIME_TOLERANCE_S = 1.0


def start_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch, as psutil reports it), ``None`` when it is gone."""
    if pid <= 1:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def owned_process(pid: int, started: float | None, cmdline_marker: str | None = None) -> psutil.Process | None:
    """The live process ``pid`` if it is still the one we started, else ``None``.

    Args:
        pid: The recorded PID; 0, 1 and negative numbers never name a process of ours.
        started: Its recorded start time; the process must have started then (within
            :data:`START_TIME_TOLERANCE_S`), or it is a later process that reuses the number.
        cmdline_marker: Checked only when ``started`` is unknown (a record written before start
            times were kept): the process's command line must then contain it. Without either,
            nothing tells our process from another one, and ``None`` is returned.
    """
    if pid <= 1:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if started is not None:
            return proc if abs(proc.create_time() - started) <= START_TIME_TOLERANCE_S else None
        if cmdline_marker and any(cmdline_marker in part for part in proc.cmdline()):
            return proc
    except psutil.Error:
        pass
    return None


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


@dataclass(frozen=True)
class OrphanedGroup:
    """The process group of a leader of ours that is gone: signalled only while no process has its PID."""

    pid: int


Root: TypeAlias = int | psutil.Process | OrphanedGroup
"""A process to stop: a PID the caller vouches for now, a ``psutil.Process`` (bound to its start
time), or the leftover group of one that exited."""


def _resolve(roots: Iterable[Root]) -> list[tuple[int, psutil.Process | None]]:
    """Each root's PID and process (``None``: none, or no process has that PID now)."""
    resolved: list[tuple[int, psutil.Process | None]] = []
    for root in roots:
        if isinstance(root, psutil.Process):
            resolved.append((root.pid, root))
            continue
        if isinstance(root, OrphanedGroup):
            if root.pid > 1:
                resolved.append((root.pid, None))
            continue
        if root <= 1:  # 0 and -1 mean "my group" and "everyone" to kill(2)
            continue
        try:
            resolved.append((root, psutil.Process(root)))
        except psutil.Error:
            resolved.append((root, None))
    return resolved


def process_tree(pids: Iterable[Root], marker: str | None = None) -> list[psutil.Process]:
    """The processes ``pids``, all their descendants, and those whose command line names ``marker``."""
    tree: dict[int, psutil.Process] = {}
    for _, root in _resolve(pids):
        if root is None:
            continue
        try:
            if not root.is_running():  # exited, or its PID now names another process
                continue
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


def _signal_group(pid: int, leader: psutil.Process | None, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` (one we created with ``start_new_session=True``), if still ours.

    While the leader is our process, the group is ours. Once the leader is gone its group may live
    on (a SIGKILLed ``ray start`` leaves its children running); the kernel does not hand out a number
    that still names a group, so while no process has the PID the group is the one we created. A
    PID that names another process now means our group is gone and the number was reused.
    """
    if pid <= 1:
        return
    if (leader is None or not leader.is_running()) and psutil.pid_exists(pid):
        return  # the leader is gone and another process holds its number: not our group any more
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def terminate_tree(pids: Iterable[Root], marker: str | None = None, grace_s: float = 5.0) -> int:
    """SIGTERM a process tree (and its process groups), then SIGKILL what outlives ``grace_s``.

    Args:
        pids: The roots. An ``int`` is trusted as the caller's process if one runs under it now (check
            it with :func:`owned_process` first when it comes from a record); a ``psutil.Process`` is
            signalled only while it is the same process (PID and start time). A root that is gone
            still has its leftover process group stopped, unless its PID names another process.
        marker: Also stop processes whose command line contains it (a directory only we use).
        grace_s: Seconds between SIGTERM and SIGKILL.

    Returns:
        The number of processes that had to be killed with SIGKILL.
    """
    roots = _resolve(pids)
    procs = process_tree([proc for _, proc in roots if proc is not None], marker)
    for pid, leader in roots:  # the groups we created with start_new_session=True
        _signal_group(pid, leader, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    # A graceful stop may spawn or orphan more (raylet restarting a worker): look once more.
    alive += [p for p in process_tree([], marker) if p not in alive]
    for pid, leader in roots:
        _signal_group(pid, leader, signal.SIGKILL)
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
