"""Hidden inputs (issue 16, item 6): every odd value a flag can get ends in exit 2 and one clear line.

A matrix of names, quantities, labels, TTLs, GPU counts, unicode and 10,000-character values for
``dmp cluster create --dry-run``, ``dmp job submit`` and ``dmp job submit --rayjob --dry-run``. Each
case must exit 2, name the flag at fault, print no traceback (nor "unexpected error", a crash by
another name), write nothing to stdout and not echo a 10,000-character value back. The cases run in
this process through the real ``dmp`` application (its error handling included), so the whole matrix
takes seconds; two run as subprocesses too, the way a user meets them. The totals are printed for the
issue's closing note.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import cli_env, describe, run_dmp
from typer.testing import CliRunner

from discord_ml_platform.cli.main import app

pytestmark = pytest.mark.timeout(120)

LONG = "x" * 10_000
CREATE = ("cluster", "create", "hidden", "--dry-run", "-o", "json")
RAYJOB = ("job", "submit", "--rayjob", "-c", "hidden", "--dry-run", "-o", "json")
SUBMIT = ("job", "submit", "-c", "hidden")
COMMAND = ("--", "python", "-c", "print(1)")

# Flag -> values it must refuse. Shared by cluster create and job submit --rayjob (one set of flags).
HARDWARE: dict[str, list[str]] = {
    "--memory": ["1e999999", "1e999999999", "99999999Ei", "-1Gi", "0", "lots", "٣Gi", "nan", "", "1e19", "5Ti", LONG],
    "--head-memory": ["1e999999", "99999999Ei", "-1Gi", "1Ki", "5Ti", "٣Gi", LONG],
    "--workers": ["-1", "257", "65", "٣", "1e3", "1_000", "1.5", "", "nan", "9" * 10_000],
    "--gpus-per-worker": ["-1", "17", "٣", "1.5", "nan", "1_0", "9" * 30, "", "1"],  # "1": on the cpu pool
    "--cpus": ["0", "-1", "nan", "inf", "1e999", "513", "1_0", "٣", "0.0000001", "", LONG],
    "--head-cpus": ["0", "129", "nan", "-inf"],
    "--gpu-type": ["H100", "h100", "", "ü", "gpu\u200b", LONG],
    "--image": ["", "not an image", "Ray:1", "ü/ray:1", "ray:tag\n2", LONG],
    "--label": [
        "mlplatform.discord.com/dagster-run-id=run-1",  # the issue: made a CLI cluster sweepable
        "mlplatform.discord.com/owner=eve",
        "mlplatform.discord.com/expires-at=9999999999",
        "app.kubernetes.io/managed-by=me",
        "ray.io/node-type=head",
        "noequals",
        "=v",
        "bad key!=v",
        "ü=1",
        "a/b/c=1",
        "x" * 64 + "=1",
        "k=" + LONG,
        LONG + "=v",
    ],
    "--min-workers": ["-1", "5", "٣"],  # 5: above --workers
    "--max-workers": ["65", "257", "٣"],
}
# Values that need a partner flag to be wrong, and the flag the message must name.
HARDWARE_PAIRS: list[tuple[list[str], str]] = [
    (["--gpu-type", "h100-80gb", "--workers", "1", "--gpus-per-worker", "9"], "--gpus-per-worker"),
    (["--gpu-type", "h100-80gb", "--workers", "9", "--gpus-per-worker", "8"], "--gpus-per-worker"),  # 72 > 64 GPUs
    (["--workers", "2", "--max-workers", "1"], "--max-workers"),
    (["--object-store-memory", "1Gi"], "--object-store-memory"),  # no such flag: an unknown option
]
CREATE_ONLY: dict[str, list[str]] = {
    "--ttl": ["99999999999999999999d", "0", "-1h", "8 hours", "1e9", "P99999999999D", "٣h", "", "8d", "25h", LONG],
    "--env": ["RAY_AUTH_MODE=token", "1BAD=x", "noequals", "=x", "ü=1"],
    "--team": ["", LONG],
    "--owner": [LONG],
    "--namespace": ["UPPER", "ü", "", LONG],
    "--timeout": ["abc", "٣"],
    "-o": ["xml"],
}
NAMES = ["UPPER", "ü", "trailing-", "a_b", "x" * 48, "", LONG]
RAYJOB_ONLY: dict[str, list[str]] = {
    "--ttl-seconds": ["-1", "90000", "٣"],
    "--deadline-seconds": ["0", "abc"],
    "--namespace": ["UPPER", "", LONG],
    "-o": ["xml"],
}
# dmp job submit on an existing cluster: the hardware flags are refused (the cluster has its hardware).
SUBMIT_CASES: list[tuple[list[str], str]] = [
    (["--gpu-type", "l4", "--workers", "2", *COMMAND], "--gpu-type, --workers only apply with --rayjob"),
    (["--memory", "4Gi", *COMMAND], "--memory"),
    (["--label", "a=b", *COMMAND], "--label"),
    (["--dry-run", *COMMAND], "--dry-run"),
    (["--bogus", *COMMAND], "--bogus"),
    (["--gpu-typo", "l4", *COMMAND], "--gpu-typo"),
    (["python", "train.py"], "before --"),  # the command without --
    (["python", *COMMAND], "before --"),
    ([], "no command given"),
    (["-e", "noequals", *COMMAND], "--env"),
    (["-e", "=x", *COMMAND], "--env"),
    (["--ttl-seconds", "-1", *COMMAND], "--ttl-seconds"),
    (["--deadline-seconds", "0", *COMMAND], "--deadline-seconds"),
    (["--timeout", "-1", *COMMAND], "--timeout"),
    (["--entrypoint-num-cpus", "-1", *COMMAND], "--entrypoint-num-cpus"),
    (["--working-dir", "/no/such/dir", *COMMAND], "--working-dir"),
    (["--runtime-env", "/no/such/env.yaml", *COMMAND], "--runtime-env"),
    (["-o", "xml", *COMMAND], "--output"),
]
SUBMIT_NAMES = ["Bad_Name", "", "ü", LONG]


@dataclass(frozen=True)
class Case:
    """One command line that must be refused, and the flag its message must name."""

    command: str
    args: tuple[str, ...]
    flag: str

    @property
    def id(self) -> str:
        shown = " ".join(a if len(a) <= 24 else f"{a[:8]}...{len(a)}-chars" for a in self.args)
        return f"{self.command}: {shown}"


def _cases() -> Iterator[Case]:
    for flag, values in HARDWARE.items():
        for value in values:
            yield Case("cluster create", (*CREATE, flag, value), flag)
            yield Case("job submit --rayjob", (*RAYJOB, flag, value, *COMMAND), flag)
    for args, flag in HARDWARE_PAIRS:
        yield Case("cluster create", (*CREATE, *args), flag)
        yield Case("job submit --rayjob", (*RAYJOB, *args, *COMMAND), flag)
    for flag, values in CREATE_ONLY.items():
        for value in values:
            yield Case("cluster create", (*CREATE, flag, value), "--output" if flag == "-o" else flag)
    for name in NAMES:
        yield Case("cluster create", ("cluster", "create", name, "--dry-run", "-o", "json"), "NAME")
    for flag, values in RAYJOB_ONLY.items():
        for value in values:
            yield Case("job submit --rayjob", (*RAYJOB, flag, value, *COMMAND), "--output" if flag == "-o" else flag)
    for name in SUBMIT_NAMES:
        yield Case("job submit --rayjob", ("job", "submit", "--rayjob", "-c", name, "--dry-run", *COMMAND), "--cluster")
        yield Case("job submit", ("job", "submit", "-c", name, *COMMAND), "--cluster")
    yield Case("job submit --rayjob", (*RAYJOB, "--gpu-type", "l4", *COMMAND), "--workers")  # GPUs, no worker
    yield Case("job submit --rayjob", (*RAYJOB, "--bogus", *COMMAND), "--bogus")
    yield Case("job submit --rayjob", (*RAYJOB, "python", *COMMAND), "before --")
    for args, flag in SUBMIT_CASES:
        yield Case("job submit", (*SUBMIT, *args), flag)


CASES = list(_cases())


@dataclass
class Outcome:
    """What ``dmp`` did with one case."""

    exit_code: int | None
    stdout: str
    stderr: str
    crashed: BaseException | None = None

    @property
    def traceback(self) -> bool:
        """A crash, shown as a traceback or hidden behind "unexpected error"."""
        return self.crashed is not None or "Traceback" in self.stderr or "unexpected error" in self.stderr

    def clear(self, flag: str) -> bool:
        """Exit 2, the flag named, nothing on stdout, no 10,000-character echo."""
        return (
            self.exit_code == 2
            and flag in self.stderr
            and self.stdout == ""
            and not self.traceback
            and len(self.stderr) < 3000
        )


@pytest.fixture(scope="module")
def matrix_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A ``dmp`` environment with no real cluster in reach (nothing may be contacted anyway)."""
    return cli_env(tmp_path_factory.mktemp("hidden"), DMP_BACKEND="local")


def run_in_process(args: tuple[str, ...], env: dict[str, str]) -> Outcome:
    """Run ``dmp ARGS`` through the application's own entry point (``DmpApp``: errors to exit codes)."""
    runner = CliRunner()
    crashed: BaseException | None = None
    code: int | None = 0
    with runner.isolation(env=env) as (out, err, _):
        try:
            app(args=list(args), prog_name="dmp")
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as exc:  # a crash is what this test counts
            crashed, code = exc, None
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Outcome(code, stdout, stderr, crashed)


def test_every_hidden_input_is_a_clear_usage_error(matrix_env: dict[str, str]) -> None:
    started = time.perf_counter()
    outcomes = [(case, run_in_process(case.args, matrix_env)) for case in CASES]
    elapsed = time.perf_counter() - started
    clear = [case for case, outcome in outcomes if outcome.clear(case.flag)]
    crashed = [case for case, outcome in outcomes if outcome.traceback]
    by_command: dict[str, list[int]] = {}
    for case, outcome in outcomes:
        counts = by_command.setdefault(case.command, [0, 0, 0])
        counts[0] += 1
        counts[1] += outcome.clear(case.flag)
        counts[2] += outcome.traceback
    for command, (tried, ok, tracebacks) in sorted(by_command.items()):
        print(f"hidden inputs, dmp {command}: tried {tried} / clear error {ok} / traceback {tracebacks}")
    print(
        f"hidden inputs, total: tried {len(outcomes)} / clear error {len(clear)} / traceback {len(crashed)} "
        f"({elapsed:.1f}s)"
    )
    failures = [
        f"{case.id}\n  expected exit 2 naming {case.flag!r}; got exit {outcome.exit_code}"
        f"{f' crash {outcome.crashed!r}' if outcome.crashed else ''}\n  stderr: {outcome.stderr[:400]!r}"
        f"\n  stdout: {outcome.stdout[:200]!r}"
        for case, outcome in outcomes
        if not outcome.clear(case.flag)
    ]
    assert not failures, f"{len(failures)} of {len(outcomes)} hidden inputs were not a clear error:\n" + "\n".join(
        failures
    )


def test_the_matrix_covers_every_command_and_kind_of_input() -> None:
    commands = {case.command for case in CASES}
    assert commands == {"cluster create", "job submit", "job submit --rayjob"}
    assert len(CASES) > 240
    joined = [" ".join(case.args) for case in CASES]
    for needle in ("1e999999", "99999999Ei", "mlplatform.discord.com/", "99999999999999999999d", "٣", LONG):
        assert any(needle in line for line in joined), needle


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ((*CREATE, "--memory", "1e999999"), "--memory"),
        (("job", "submit", "-c", "hidden", "--gpu-type", "l4", "--workers", "2", *COMMAND), "--gpu-type"),
    ],
    ids=["memory-1e999999", "submit-unknown-hardware"],
)
def test_the_issues_cases_as_a_user_meets_them(cli_root: Path, args: tuple[str, ...], flag: str) -> None:
    """The issue's two worst cases through ``python -m``: an exit code and a line, at once."""
    started = time.perf_counter()
    result = run_dmp(*args, env=cli_env(cli_root), timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith(f"error: {flag}"), describe(result)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert elapsed < 30, f"took {elapsed:.1f}s"  # was 52 s of CPU before the bound; startup is ~1-2 s


def test_the_command_after_dashes_is_passed_untouched(matrix_env: dict[str, str]) -> None:
    """Options after ``--`` belong to the job (``--epochs``, even ``--gpu-type``), not to ``dmp``."""
    import yaml

    outcome = run_in_process(
        (*RAYJOB[:-2], "-o", "yaml", "--", "python", "train.py", "--gpu-type", "l4", "--", "-x"), matrix_env
    )
    assert outcome.exit_code == 0, outcome
    manifest = yaml.safe_load(outcome.stdout)
    assert manifest["spec"]["entrypoint"] == "python train.py --gpu-type l4 -- -x"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*RAYJOB, "--entrypoint-num-cpus", "1", *COMMAND), "--entrypoint-num-cpus does not apply with --rayjob"),
        ((*RAYJOB, "--working-dir", "{dir}", *COMMAND), "--working-dir does not apply with --rayjob"),
        (("job", "submit", "--rayjob", "-c", "hidden", "-d", "{dir}", "--entrypoint-num-cpus", "0.5", *COMMAND),
         "--working-dir, --entrypoint-num-cpus do not apply with --rayjob"),
        ((*SUBMIT, "--ttl-seconds", "30", *COMMAND), "--ttl-seconds only applies with --rayjob"),
        ((*SUBMIT, "--deadline-seconds", "60", "--workers", "1", *COMMAND),
         "--workers, --deadline-seconds only apply with --rayjob"),
    ],
    ids=["rayjob-entrypoint-cpus", "rayjob-working-dir", "rayjob-both-no-dry-run", "ttl-seconds", "deadline-seconds"],
)
def test_a_flag_of_the_other_mode_is_refused_not_dropped(
    matrix_env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """A flag the chosen mode would ignore (a RayJob reserves no driver CPUs and cannot read a local
    directory; a job on an existing cluster has no TTL or deadline of its own) is a usage error,
    before anything is provisioned or contacted."""
    outcome = run_in_process(tuple(a.replace("{dir}", str(tmp_path)) for a in args), matrix_env)
    assert outcome.exit_code == 2 and message in outcome.stderr, outcome
    assert outcome.stdout == "" and not outcome.traceback
