"""Local cluster records: PIDs kept with their start times, private files, no head that no record names.

Most tests need no Ray: a record names stand-in processes (``sleep``, each in its own session as
``setsid sleep`` would be), which is all the backend looks at when it lists and deletes. The
interrupt tests spawn a real Ray head and check that nothing of it outlives the interrupt.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest
from drivers import wait_for
from drivers.local_records import write_record

from discord_ml_platform.backends import ClusterHandle
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.backends.processes import live_command_lines, owned_process, start_time
from discord_ml_platform.spec import ClusterSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import cli_env, describe, run_dmp

pytestmark = pytest.mark.timeout(60)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(tmp_path: Path, session_root: Path) -> LocalBackend:
    """A backend with a state dir of the test's own; its Ray temp root under the session's (leak-checked)."""
    temp_root = Path(tempfile.mkdtemp(prefix="lr-", dir=session_root / "r"))
    return LocalBackend(state_dir=tmp_path / "state", temp_root=temp_root)


def test_a_record_whose_pids_now_name_other_processes_is_dead_and_delete_leaves_them_running(backend, sleepers):
    # The head and worker we started an hour ago are gone; their PIDs now belong to `setsid sleep`s.
    head, worker = sleepers.start(), sleepers.start()
    an_hour_ago = start_time(head.pid) - 3600
    write_record(backend, "reused-pids", head.pid, head_started=an_hour_ago,
                 worker_pids=(worker.pid,), worker_started=(an_hour_ago,))
    [info] = backend.list()
    assert (info.handle.name, info.status, info.ready_workers) == ("reused-pids", "dead", 0)

    backend.delete(ClusterHandle("reused-pids", "local", "local"))
    assert head.poll() is None and worker.poll() is None  # never signalled, nor their groups
    assert backend.list() == [] and not backend.records.path("reused-pids").exists()


def test_a_record_without_start_times_trusts_a_pid_only_when_its_command_line_names_the_cluster(backend, sleepers):
    # Records written before start times were kept: the sleep names neither the temp dir nor the GCS.
    head, worker = sleepers.start(), sleepers.start()
    write_record(backend, "old-record", head.pid, head_started=None, worker_pids=(worker.pid,))
    assert [(i.status, i.ready_workers) for i in backend.list()] == [("dead", 0)]
    backend.delete(ClusterHandle("old-record", "local", "local"))
    assert head.poll() is None and worker.poll() is None
    assert backend.list() == []


def test_a_record_whose_processes_are_ours_is_ready_and_delete_stops_them(backend, sleepers):
    head, worker = sleepers.start(), sleepers.start()
    write_record(backend, "ours", head.pid, head_started=start_time(head.pid),
                 worker_pids=(worker.pid,), worker_started=(start_time(worker.pid),))
    assert [(i.status, i.ready_workers) for i in backend.list()] == [("ready", 1)]
    backend.delete(ClusterHandle("ours", "local", "local"))
    assert head.wait(timeout=10) is not None and worker.wait(timeout=10) is not None
    assert backend.list() == []


def test_the_leftover_group_of_a_head_that_died_is_still_stopped(backend):
    # `ray start` SIGKILLed: its children run on in its group, under a PID no process has any more.
    leader = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!"], start_new_session=True, stdout=subprocess.PIPE,
                              text=True)
    assert leader.stdout is not None
    orphan = psutil.Process(int(leader.stdout.readline()))
    started = start_time(leader.pid)
    leader.wait(timeout=10)  # reaped: the PID is free, the group lives on in the orphan
    try:
        write_record(backend, "orphaned", leader.pid, head_started=started)
        backend.delete(ClusterHandle("orphaned", "local", "local"))
        assert wait_for(lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE, 10)
    finally:
        if orphan.is_running():
            orphan.kill()


def test_dmp_cluster_delete_leaves_a_reused_pid_running(sleepers):
    root = Path(tempfile.mkdtemp(prefix="dmpr-", dir="/tmp"))
    try:
        env = cli_env(root, DMP_BACKEND="local")
        backend = LocalBackend(state_dir=root / "state", temp_root=root / "r")
        (root / "r").mkdir()
        head = sleepers.start()
        write_record(backend, "reused", head.pid, head_started=start_time(head.pid) - 3600)

        listed = run_dmp("cluster", "list", "-A", "-o", "json", env=env)
        assert listed.returncode == 0, describe(listed)
        assert '"status": "dead"' in listed.stdout
        deleted = run_dmp("cluster", "delete", "reused", "-y", env=env)
        assert deleted.returncode == 0, describe(deleted)
        assert head.poll() is None
        assert not (root / "state" / "reused.json").exists()
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_records_are_private_and_written_atomically_with_fsync(backend, sleepers, monkeypatch):
    backend.state_dir.mkdir(parents=True, mode=0o755)
    os.chmod(backend.state_dir, 0o755)  # an existing, readable state dir is made private
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    head = sleepers.start()
    write_record(backend, "private", head.pid, head_started=start_time(head.pid))
    assert synced == ["file", "dir"]  # the data, then the rename
    assert stat.S_IMODE(os.stat(backend.records.path("private")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(backend.state_dir).st_mode) == 0o700
    assert sorted(p.name for p in backend.state_dir.iterdir()) == ["private.json"]  # no temp file left


def test_an_unreadable_record_is_listed_as_invalid_and_hides_nothing(backend, sleepers):
    head = sleepers.start()
    write_record(backend, "good", head.pid, head_started=start_time(head.pid))
    backend.records.path("broken").write_text('{"name": "broken", "head_pid": "not a pid"}')
    backend.records.path("other-name").write_text(backend.records.path("good").read_text())
    listed = {i.handle.name: i.status for i in backend.list()}
    assert listed == {"good": "ready", "broken": "invalid", "other-name": "invalid"}
    backend.delete(ClusterHandle("broken", "local", "local"))  # removed, nothing signalled
    assert not backend.records.path("broken").exists() and head.poll() is None


def test_owned_process_needs_the_start_time_or_the_marker(sleepers):
    proc = sleepers.start()
    started = start_time(proc.pid)
    assert owned_process(proc.pid, started) is not None
    assert owned_process(proc.pid, started - 5) is None
    assert owned_process(proc.pid, None) is None and owned_process(proc.pid, None, "600") is not None
    assert owned_process(0, None, "") is None and owned_process(1, None, "init") is None


# An interrupt between spawning the head and saving its record ---------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(150)
def test_an_interrupt_right_after_the_head_is_spawned_leaves_no_ray_process(backend, monkeypatch):
    spawn = LocalBackend._spawn

    def spawn_then_interrupt(cmd, log_path, env):
        spawn(cmd, log_path, env)
        # Let the head get as far as starting its own children (the GCS), then Ctrl-C.
        assert wait_for(lambda: any("gcs_server" in c for c in live_command_lines(str(backend.temp_root))), 60)
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalBackend, "_spawn", staticmethod(spawn_then_interrupt))
    with pytest.raises(KeyboardInterrupt):
        backend.create(ClusterSpec(name="interrupted", head_memory="1Gi"))
    assert wait_for(lambda: live_command_lines(str(backend.temp_root)) == [], 10), \
        live_command_lines(str(backend.temp_root))
    assert backend.list() == []


_DIES_AFTER_SPAWN = """
import os, sys
from pathlib import Path
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.spec import ClusterSpec

spawn = LocalBackend._spawn
def spawn_then_die(cmd, log_path, env):
    spawn(cmd, log_path, env)
    os._exit(3)  # as a SIGKILL would: no handler, no finally
LocalBackend._spawn = staticmethod(spawn_then_die)
LocalBackend(state_dir=Path(sys.argv[1]), temp_root=Path(sys.argv[2])).create(
    ClusterSpec(name="orphan-head", head_memory="1Gi"))
"""


@pytest.mark.ray
@pytest.mark.timeout(150)
def test_a_creator_killed_right_after_the_spawn_leaves_a_record_that_names_the_head(backend):
    code = textwrap.dedent(_DIES_AFTER_SPAWN)
    died = subprocess.run([sys.executable, "-c", code, str(backend.state_dir), str(backend.temp_root)],
                          cwd=PROJECT_ROOT, timeout=60, capture_output=True, text=True)
    assert died.returncode == 3, died.stderr
    assert live_command_lines(str(backend.temp_root))  # the head runs on...
    [info] = backend.list()  # ...and a record names it
    assert (info.handle.name, info.status) == ("orphan-head", "pending")
    backend.delete(info.handle)
    assert wait_for(lambda: live_command_lines(str(backend.temp_root)) == [], 10), \
        live_command_lines(str(backend.temp_root))
    assert backend.list() == []
