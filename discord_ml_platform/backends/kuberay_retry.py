"""Bounded retries for Kubernetes API calls: 429 (honouring ``Retry-After``), 5xx, dropped connections.

The ``kubernetes`` client's own urllib3 retries are switched off by the backend (they retry some
methods silently and not others); every call goes through :func:`call_with_retries` instead, so
the policy is the same for every verb, bounded in attempts and time, and visible in the final
error. Callers that must treat a retried ``create`` specially (a 409 after a dropped connection
means *our* first attempt went through) handle the 409 themselves: it is never retried here.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from discord_ml_platform.backends.base import ClusterError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and total time.

    Attributes:
        max_attempts: Calls made at most (the first one included).
        base_delay_s: Delay ceiling before the first retry; doubles with every retry.
        max_delay_s: Largest single delay (a ``Retry-After`` may ask for more, up to ``deadline_s``).
        deadline_s: Time budget for one logical call, retries and waits included.
    """

    max_attempts: int = 6
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    deadline_s: float = 60.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return wait


def api_exception_type() -> type[Exception]:
    """``kubernetes.client.ApiException`` (imported lazily)."""
    from kubernetes.client.exceptions import ApiException

    return ApiException


def is_connection_error(err: BaseException) -> bool:
    """Dropped or refused connections and read timeouts: the request may or may not have arrived."""
    import urllib3.exceptions as u3

    return isinstance(
        err, (u3.ProtocolError, u3.MaxRetryError, u3.NewConnectionError, u3.TimeoutError, ConnectionError, TimeoutError)
    )


def retry_after_seconds(err: BaseException) -> float | None:
    """The ``Retry-After`` header of an API error in seconds, if any."""
    headers = getattr(err, "headers", None) or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def api_error_message(err: BaseException) -> str:
    """A one-line description of an API error: code, reason and the server's ``Status.message``."""
    status = getattr(err, "status", None)
    if status is None:
        return f"{type(err).__name__}: {err}"
    message = ""
    body = getattr(err, "body", None)
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = str(body)[:300]
    reason = getattr(err, "reason", "") or ""
    return f"HTTP {status} {reason}{': ' + message if message else ''}".strip()


def is_retryable(err: BaseException) -> bool:
    """Whether ``err`` is worth another attempt."""
    if isinstance(err, api_exception_type()):
        return getattr(err, "status", None) in RETRYABLE_STATUS
    return is_connection_error(err)


def call_with_retries(
    fn: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error occurs, or the policy is exhausted.

    Args:
        fn: The API call, without arguments.
        what: What the call does, for messages (e.g. ``"create RayCluster ray/foo"``).
        policy: Attempts, backoff and deadline.
        sleep: Injected for tests.
        on_retry: Called with ``(attempt, error, delay)`` before each wait.

    Returns:
        What ``fn`` returned.

    Raises:
        ApiException: a non-retryable API error (404, 409, 403...), unchanged, for the caller.
        ClusterError: retries exhausted; the message names the call, attempts and the last error.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as err:
            if not is_retryable(err):
                raise
            elapsed = time.monotonic() - started
            delay = policy.delay(attempt, retry_after_seconds(err))
            if attempt >= policy.max_attempts or elapsed + delay > policy.deadline_s:
                raise ClusterError(
                    f"Kubernetes API call failed: {what}: {api_error_message(err)} "
                    f"(gave up after {attempt} attempt(s) in {elapsed:.1f}s)"
                ) from err
            log.warning("%s failed (%s); retry %d in %.2fs", what, api_error_message(err), attempt, delay)
            if on_retry is not None:
                on_retry(attempt, err, delay)
            sleep(delay)


def status_code(err: BaseException) -> int | None:
    """HTTP status of an ``ApiException`` (``None`` for anything else)."""
    return getattr(err, "status", None) if isinstance(err, api_exception_type()) else None


def ignore_missing(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; a 404 returns ``None`` instead of raising."""
    try:
        return fn()
    except Exception as err:
        if status_code(err) == 404:
            return None
        raise
