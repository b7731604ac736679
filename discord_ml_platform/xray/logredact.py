"""Keep the dashboard token (and anything that looks like a credential in a URL) out of every log.

X-Ray reads its token from headers only, and uvicorn's access log never writes headers. A client
may still put the token in a URL (``?token=...``, a path segment): the request is refused, but
uvicorn would write the request line to the access log as it came. :class:`RedactSecrets` rewrites
such records before any handler sees them: the values of query parameters whose names look like
credentials, and every occurrence of a known secret (raw or percent-encoded), become
``[redacted]``. :func:`install_redaction` puts it on uvicorn's loggers and on the handlers of the
root logger (where the platform's own loggers end up) while the app runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

REDACTED = "[redacted]"
# Query parameter names whose values are never logged, whatever their value.
SENSITIVE_PARAM = re.compile(r"token|auth|key|secret|passw|session|signature|credential|sig$", re.IGNORECASE)
# uvicorn's loggers: the request line of every request, and server errors (tracebacks included).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _variants(secret: str) -> list[str]:
    """The secret as it may appear in a URL: raw, percent-encoded, form-encoded."""
    return list(dict.fromkeys(v for v in (secret, quote(secret, safe=""), quote_plus(secret)) if v))


class RedactSecrets(logging.Filter):
    """A logging filter that redacts ``secrets`` and credential-like query values; it drops nothing.

    Args:
        secrets: Values never to be logged (the dashboard token); empty ones are ignored.
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self._patterns = [v for s in self.secrets for v in _variants(s)]

    def redact_text(self, text: str) -> str:
        """``text`` with every known secret (raw or URL-encoded, any hex case) replaced."""
        for pattern in self._patterns:
            if pattern in text:
                text = text.replace(pattern, REDACTED)
        if self.secrets and "%" in text:  # an encoding we did not foresee (lower-case hex, extra escapes)
            text = " ".join(self._redact_encoded(word) for word in text.split(" "))
        return text

    def _redact_encoded(self, word: str) -> str:
        decoded = unquote_plus(word)
        return REDACTED if any(s in decoded for s in self.secrets) else word

    def redact_target(self, target: str) -> str:
        """A request target (path and query) with credential-like query values and secrets redacted."""
        path, sep, query = target.partition("?")
        if sep:
            items = []
            for item in query.split("&"):
                name, eq, _value = item.partition("=")
                if eq and SENSITIVE_PARAM.search(unquote_plus(name)):
                    item = f"{name}={REDACTED}"
                items.append(item)
            target = path + "?" + "&".join(items)
        segments = [self._redact_encoded(part) if "%" in part else part for part in re.split(r"([/?&=])", target)]
        return self.redact_text("".join(segments))

    def _clean(self, value: Any, access: bool) -> Any:
        if not isinstance(value, str):
            return value
        return self.redact_target(value) if access else self.redact_text(value)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message, arguments and traceback text in place; always keep it."""
        access = record.name == "uvicorn.access"
        if isinstance(record.msg, str):
            record.msg = self.redact_text(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: self._clean(v, access) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._clean(v, access) for v in record.args)
        if record.exc_info and not record.exc_text:
            # Formatters reuse ``exc_text`` once set, so the traceback is written redacted.
            record.exc_text = self.redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact_text(record.exc_text)
        return True


def install_redaction(secrets: Iterable[str | None]) -> Callable[[], None]:
    """Redact ``secrets`` in uvicorn's records and in everything the root logger's handlers write.

    The filter goes on uvicorn's loggers (so a record is redacted before any handler, whoever
    configured it, sees it) and on the handlers of those loggers and of the root logger (which
    the platform's own loggers propagate to).

    Returns:
        A function that takes the filter off again (the app calls it on shutdown).
    """
    redactor = RedactSecrets(secrets)
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    handlers = {h for lg in [*loggers, logging.getLogger()] for h in lg.handlers}
    targets: list[logging.Logger | logging.Handler] = [*loggers, *handlers]
    for target in targets:
        target.addFilter(redactor)

    def uninstall() -> None:
        for target in targets:
            target.removeFilter(redactor)

    return uninstall
