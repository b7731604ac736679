"""Who may read what and change things, and the headers every response carries.

The cluster list, a cluster's spec summary, conditions and events are open to whoever reaches the
dashboard under an allowed host name (``TrustedHostMiddleware``, see ``app.py``). Job output and
job metadata (logs, Ray jobs) and notebooks need the configured token (``DMP_XRAY_TOKEN``), and so
does every mutating call. The token is taken from a header only, ``Authorization: Bearer <token>``
or ``X-XRay-Token``, never from the query string (URLs end up in access logs, proxies and browser
history), and compared in constant time. There is no cookie-based auth at all, so a cross-site
form or image cannot ride on a session; on top, a mutating request that names another origin
(``Origin`` / ``Sec-Fetch-Site``) is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request, status

from discord_ml_platform.xray.settings import XRaySettings

TOKEN_HEADER = "X-XRay-Token"
# Pages run only our own script and styles; no inline script, nothing from elsewhere, no framing.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def presented_token(request: Request) -> str | None:
    """The token a request carries in ``Authorization: Bearer`` or ``X-XRay-Token``, if any."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get(TOKEN_HEADER) or None


def token_matches(settings: XRaySettings, presented: str | None) -> bool:
    """Constant-time comparison with the configured token (``False`` when none is configured)."""
    if not settings.token or not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), settings.token.encode("utf-8"))


def is_writer(request: Request, settings: XRaySettings) -> bool:
    """Whether the request presents the right token (no exception; for optional fields)."""
    return token_matches(settings, presented_token(request))


def _check_token(request: Request, settings: XRaySettings) -> None:
    presented = presented_token(request)
    if presented is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"this needs the dashboard token (Authorization: Bearer ... or {TOKEN_HEADER})",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not token_matches(settings, presented):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong dashboard token", headers={"WWW-Authenticate": "Bearer"}
        )


def reader_dependency(settings: XRaySettings) -> Callable[[Request], None]:
    """A FastAPI dependency for routes that show job output, job metadata or notebooks: token holders only.

    Raises (in the dependency):
        HTTPException: 403 when no token is configured (nobody may read them then), 401 when the
            token is missing or wrong.
    """

    def require_reader(request: Request) -> None:
        if not settings.writes_enabled:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "job logs, job details and notebooks need the dashboard token: start X-Ray with DMP_XRAY_TOKEN set",
            )
        _check_token(request, settings)

    return require_reader


def cross_site(request: Request) -> str | None:
    """Why the request comes from another site, or ``None`` when it is same-origin (or not a browser)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site {fetch_site}"
    origin = request.headers.get("origin")
    if origin:
        host = request.headers.get("host", "")
        if origin.rstrip("/") != f"{request.url.scheme}://{host}":
            return f"Origin {origin}"
    return None


def writer_dependency(settings: XRaySettings) -> Callable[[Request], None]:
    """A FastAPI dependency that lets only token holders through, from our own origin.

    Raises (in the dependency):
        HTTPException: 403 when writes are disabled or the request is cross-site, 401 when the
            token is missing or wrong.
    """

    def require_writer(request: Request) -> None:
        if not settings.writes_enabled:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this dashboard is read-only: start it with DMP_XRAY_TOKEN set to allow changes",
            )
        why = cross_site(request)
        if why:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"cross-site request refused ({why})")
        _check_token(request, settings)

    return require_writer


class SecurityHeaders:
    """ASGI middleware adding CSP, no-sniff, no-referrer (notebook links carry a token) and no framing.

    Every response gets the same strict CSP, the API reference at ``/api/docs`` included: it is our
    own page, with no inline script and no asset from elsewhere.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
