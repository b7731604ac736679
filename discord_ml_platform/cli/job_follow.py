"""How ``dmp job submit`` shows a job: the platform's job runner's events, printed as they come.

One loop for both modes (a cluster's Jobs API, a KubeRay RayJob): the job's output goes to the log
stream (stdout, or stderr when stdout holds ``-o json``/``yaml``), what the cluster manager reports
(phases, notices, failed attempts) to stderr, and the :class:`~discord_ml_platform.jobs.events.JobResult`
of the last event is the outcome. The runner is built with ``stop_on_exit=False``: Ctrl-C detaches,
the job keeps running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, TextIO

from discord_ml_platform.cli.errors import EXIT_INTERRUPTED, CliError
from discord_ml_platform.cli.output import stderr

if TYPE_CHECKING:
    from discord_ml_platform.jobs.events import JobEvent, JobResult, JobSubmitted


def follow(
    events: Generator[JobEvent, None, None],
    log_stream: TextIO,
    *,
    on_submitted: Callable[[JobSubmitted], None],
    detach: Callable[[JobSubmitted], tuple[str, str]],
    unreachable: Callable[[Exception], CliError] | None = None,
    timeout_s: float | None = None,
) -> JobResult:
    """Print a run's events until it finishes, and return its result.

    Args:
        events: The runner's events (``runner.run(target, workload)``).
        log_stream: Where the job's own output goes.
        on_submitted: Says that the job was handed over (once, when it is).
        detach: ``(what, hint)`` for Ctrl-C and for giving up once the job runs: what keeps
            running (``job dmp-...``) and how to stop it.
        unreachable: Turns an error before the job was handed over (a dashboard that does not answer)
            into a message; ``None`` lets it through.
        timeout_s: ``--timeout``, the runner's ``job_timeout_s``, named when the runner gives up.

    Raises:
        CliError: detached (exit 130), gave up waiting, or the job could not be handed over.
    """
    from rich.markup import escape

    from discord_ml_platform.jobs.client import RayJobError
    from discord_ml_platform.jobs.events import (
        AttemptFailed,
        JobFinished,
        JobPhase,
        JobSubmitted,
        LogLine,
        Notice,
    )

    err = stderr()
    submitted: JobSubmitted | None = None
    # Whatever ends the loop, the run's generator is closed now, not at garbage collection; with
    # stop_on_exit=False that leaves the job running.
    with contextlib.closing(events):
        try:
            for event in events:
                if isinstance(event, LogLine):
                    log_stream.write(event.text + "\n")
                    log_stream.flush()
                elif isinstance(event, JobSubmitted):
                    submitted = event
                    on_submitted(event)
                elif isinstance(event, JobPhase):
                    err.print(f"[dim]{escape(event.description)}[/]")
                elif isinstance(event, AttemptFailed):
                    err.print(
                        f"[yellow]attempt {event.attempt} of {event.attempts_allowed} failed"
                        f"{f' ({escape(event.reason)})' if event.reason else ''}; "
                        "KubeRay runs the job again on a new cluster[/]"
                    )
                elif isinstance(event, Notice):
                    err.print(f"[yellow]{escape(event.message)}[/]")
                elif isinstance(event, JobFinished):
                    return event.result
        except KeyboardInterrupt:
            if submitted is None:
                raise
            what, hint = detach(submitted)
            raise CliError(f"detached from {what}; it keeps running", hint=hint, exit_code=EXIT_INTERRUPTED) from None
        except RayJobError as error:
            if submitted is None:
                raise
            # Once the job runs, the runner raises only when it gives up waiting (job_timeout_s);
            # without stop_on_exit it leaves the job running.
            what, hint = detach(submitted)
            waited = f" after --timeout {timeout_s:g}s" if timeout_s is not None else f" ({error})"
            raise CliError(f"gave up waiting for {what}{waited}; it keeps running", hint=hint) from None
        except (ConnectionError, RuntimeError) as error:
            if submitted is not None or unreachable is None:
                raise
            raise unreachable(error) from None
    raise CliError("the job runner ended without reporting how the job ended")


def outcome_line(result: JobResult) -> str:
    """The last line people see: the job's final status in colour, and why it failed."""
    from rich.markup import escape

    color = "green" if result.succeeded else "red"
    if result.rayjob:
        return f"[{color}]{escape(result.describe())}[/]"
    text = f"job {escape(result.job_id)} [{color}]{escape(result.status or 'gone')}[/] after {result.duration_s:.1f}s"
    if result.message and not result.succeeded:
        text += f": {escape(result.message.splitlines()[0])}"
    return text
