"""API errors rendered as Kubernetes ``Status`` bodies.

The official client turns any non-2xx answer into ``ApiException(status=code)`` and callers branch
on ``e.status`` and, sometimes, on the ``reason`` in the JSON body, so the sandbox answers exactly
the way kube-apiserver does: ``kind: Status``, ``status: Failure``, a machine-readable ``reason``
and the HTTP ``code`` repeated in the body.
"""

from __future__ import annotations

from typing import Any

# HTTP code for each Status reason the sandbox can produce (the same pairs kube-apiserver uses).
REASON_CODES: dict[str, int] = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Gone": 410,
    "Expired": 410,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}


class ApiError(Exception):
    """A failed API call, carried up to the HTTP layer and sent as a ``Status`` body.

    Args:
        reason: The Kubernetes ``StatusReason`` (``NotFound``, ``Conflict``, ...).
        message: Human-readable text; mirrors kube-apiserver's wording where tests may match it.
        code: HTTP status; defaults to the usual code for ``reason``.
        details: Optional ``StatusDetails`` (``name``, ``group``, ``kind``, ``causes``...).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code if code is not None else REASON_CODES.get(reason, 500)
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` object for this error."""
        return status_body(self.reason, self.message, self.code, self.details)


def status_body(
    reason: str,
    message: str,
    code: int,
    details: dict[str, Any] | None = None,
    status: str = "Failure",
) -> dict[str, Any]:
    """Build a ``v1 Status`` object.

    Args:
        reason: Status reason; empty for success.
        message: Human-readable message.
        code: HTTP code mirrored in the body.
        details: Optional ``StatusDetails``.
        status: ``Failure`` or ``Success``.

    Returns:
        The ``Status`` as a JSON-ready dict.
    """
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": status,
        "message": message,
        "code": code,
    }
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return body


def qualified(resource: str, group: str) -> str:
    """``pods`` for the core group, ``rayclusters.ray.io`` otherwise (kube-apiserver's wording)."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    """``404 NotFound`` for one object."""
    return ApiError(
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    """``409 AlreadyExists`` on create."""
    return ApiError(
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        details={"name": name, "group": group, "kind": resource},
    )


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiError:
    """``409 Conflict``: a stale ``resourceVersion`` or a failed precondition."""
    text = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {text}',
        details={"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """``422 Invalid`` with one ``cause`` per bad field (``(field, message)`` pairs)."""
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    return ApiError(
        "Invalid",
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def bad_request(message: str) -> ApiError:
    """``400 BadRequest``."""
    return ApiError("BadRequest", message)


def gone(message: str) -> ApiError:
    """``410 Expired``: a watch or continue token from a resourceVersion no longer kept."""
    return ApiError("Expired", message, code=410)
