"""What ``dmp job submit`` is given: the command after ``--``, the runtime env, and flags that only
some modes take, each checked before anything is contacted (a bad one is a usage error, exit 2)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from discord_ml_platform.cli.errors import UsageProblem
from discord_ml_platform.cli.hardware_flags import HARDWARE_FLAGS, parse_pairs

# Where CommandAfterDashes leaves the words it found before ``--`` (ctx.meta key).
STRAY_ARGS = "dmp.stray_args"
# Flag -> parameter of what only a RayJob uses besides the hardware: the lifetime of its cluster.
RAYJOB_FLAGS = {"--ttl-seconds": "ttl_seconds", "--deadline-seconds": "deadline_seconds"}
# Flag -> parameter of what only a submission to an existing cluster's Jobs API uses: a RayJob's job
# is submitted from inside the cluster (no local directory to upload), and the platform's RayJob
# reserves no CPUs for its driver.
JOBS_API_FLAGS = {"--working-dir": "working_dir", "--entrypoint-num-cpus": "entrypoint_num_cpus"}


class CommandAfterDashes(TyperCommand):
    """A command whose ``COMMAND...`` argument is exactly what follows ``--``, and nothing else.

    Everything before ``--`` is parsed as this command's options, so an unknown or misspelt option
    (``--gpu-type`` on a job without ``--rayjob``) is a usage error naming it (exit 2) instead of
    becoming part of the job's command line; a bare word before ``--`` is refused the same way.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: the Context of typer's vendored click
        """Parse the options before ``--``; the words after it are the command, untouched.

        Words before ``--`` that are no option's value are kept in ``ctx.meta[STRAY_ARGS]`` for the
        command to refuse (as a usage error of its own, exit 2).
        """
        cut = args.index("--") if "--" in args else len(args)
        own, command = args[:cut], args[cut + 1 :]
        rest = super().parse_args(ctx, own)
        ctx.meta[STRAY_ARGS] = tuple(ctx.params.get("command") or ())
        ctx.params["command"] = tuple(command)
        return rest


def refuse_stray_args(ctx: typer.Context) -> None:
    """Refuse words before ``--`` (``dmp job submit -c x python train.py``): the command goes after it.

    Raises:
        UsageProblem: naming the first such word.
    """
    from discord_ml_platform.spec.errors import shown

    stray = ctx.meta.get(STRAY_ARGS) or ()
    if stray:
        raise UsageProblem(
            f"unexpected argument {shown(stray[0])} before --: the command goes after --",
            hint="e.g. dmp job submit -c NAME -- python train.py --epochs 3",
        )


def check_cluster_name(name: str, flag: str = "--cluster") -> None:
    """Refuse a cluster name no cluster can have (the platform's names are DNS-1123 labels), before any lookup.

    Raises:
        UsageProblem: naming ``flag`` and the rule.
    """
    from discord_ml_platform.spec.cluster_spec import DNS_1123_LABEL, MAX_CLUSTER_NAME
    from discord_ml_platform.spec.errors import shown

    if len(name) > MAX_CLUSTER_NAME or not DNS_1123_LABEL.match(name):
        raise UsageProblem(
            f"{flag}: name {shown(name)} must be a DNS-1123 label: lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MAX_CLUSTER_NAME} characters"
        )


def entrypoint_of(command: list[str]) -> str:
    """The shell command of a job: one argument is taken as written, several are quoted and joined."""
    if not command:
        raise UsageProblem("no command given", hint="put it after --, e.g. dmp job submit -c NAME -- python train.py")
    return command[0] if len(command) == 1 else shlex.join(command)


def load_runtime_env(path: Path | None, working_dir: Path | None, env: list[str]) -> dict[str, Any]:
    """The job's runtime env: the YAML/JSON file, then ``--working-dir`` and ``--env`` on top."""
    import yaml

    runtime_env: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as err:
            raise UsageProblem(f"--runtime-env: cannot read {path}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise UsageProblem(f"--runtime-env: {path} is not valid YAML or JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise UsageProblem(f"--runtime-env: {path} must hold a mapping such as {{pip: [...], env_vars: {{...}}}}")
        runtime_env.update(loaded)
    if working_dir is not None:
        if not working_dir.is_dir():
            raise UsageProblem(f"--working-dir: {working_dir} is not a directory")
        runtime_env["working_dir"] = str(working_dir.resolve())
    for key, value in parse_pairs(env, "--env").items():
        runtime_env.setdefault("env_vars", {})[key] = value
    return runtime_env


def given(ctx: typer.Context, param: str) -> bool:
    """Whether the user typed the option of ``param`` (not merely its default)."""
    source = ctx.get_parameter_source(param)
    # By name: typer vendors its own click, whose ParameterSource is not click's.
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def refuse_rayjob_flags(ctx: typer.Context, *, dry_run: bool) -> None:
    """Refuse the hardware flags, ``--ttl-seconds``, ``--deadline-seconds`` (and ``--dry-run``) on a
    job for an existing cluster, naming each one.

    Raises:
        UsageProblem: ``--gpu-type, --workers only apply with --rayjob``.
    """
    flags = [flag for flag, param in {**HARDWARE_FLAGS, **RAYJOB_FLAGS}.items() if given(ctx, param)]
    if dry_run:
        flags.append("--dry-run")
    if flags:
        raise UsageProblem(
            f"{', '.join(flags)} only appl{'ies' if len(flags) == 1 else 'y'} with --rayjob",
            hint="a job on an existing cluster runs on that cluster's hardware, for as long as that cluster "
            "lives, and has no manifest to print; add --rayjob, or create a cluster with "
            "`dmp cluster create --gpu-type ... --ttl ...`",
        )


def refuse_jobs_api_flags(ctx: typer.Context) -> None:
    """Refuse ``--working-dir`` and ``--entrypoint-num-cpus`` on a RayJob, naming each one given:
    neither would reach the job (a silent drop, or a path only this machine can read).

    Raises:
        UsageProblem: ``--working-dir does not apply with --rayjob``.
    """
    flags = [flag for flag, param in JOBS_API_FLAGS.items() if given(ctx, param)]
    if flags:
        raise UsageProblem(
            f"{', '.join(flags)} do{'es' if len(flags) == 1 else ''} not apply with --rayjob",
            hint="a RayJob's job is submitted from inside its cluster, which cannot read a local directory "
            "(put the code in the image with --image, or a remote working_dir URI in --runtime-env), and its "
            "driver runs with the head's CPUs; drop the flag, or submit to an existing cluster without --rayjob",
        )
