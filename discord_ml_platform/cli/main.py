"""The ``dmp`` application: wiring of the command groups, and one place that turns errors into exits.

Run as ``dmp ...`` (the console script) or ``python -m discord_ml_platform.cli.main ...``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from discord_ml_platform.cli import cluster, gpus, job, run, sandbox, xray
from discord_ml_platform.cli.errors import handle


class DmpApp(typer.Typer):
    """A ``Typer`` whose errors become one actionable message and an exit code (1 runtime, 2 usage)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            sys.exit(handle(exc))


app = DmpApp(
    name="dmp",
    help=(
        "Discord ML platform: Ray clusters on KubeRay (or local processes), Ray jobs, and the "
        "Ad Relevance pipeline.\n\n"
        "Backend: --backend, else $DMP_BACKEND, else kuberay when a kubeconfig's API server answers, else local."
    ),
    epilog=(
        "Examples:\n\n"
        "  dmp cluster create --gpu-type h100-80gb --workers 4 --wait\n\n"
        "  dmp job submit --cluster NAME -- python train.py\n\n"
        "  dmp gpus"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(cluster.app, name="cluster")
app.add_typer(job.app, name="job")
app.command("gpus", epilog=gpus.EPILOG)(gpus.gpus)
app.add_typer(run.app, name="run")
app.add_typer(sandbox.app, name="sandbox")
app.command("xray", epilog=xray.EPILOG)(xray.xray)


if __name__ == "__main__":
    app(prog_name="dmp")
