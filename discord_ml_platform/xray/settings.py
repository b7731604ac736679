"""Settings of the X-Ray dashboard, from arguments or ``DMP_XRAY_*`` environment variables.

Only the dashboard's own variables are read here; the platform's (``DMP_PLATFORM_CONFIG``,
``DMP_RAY_AUTH_MODE``...) come from the platform core and are passed in (``dmp xray`` does).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from discord_ml_platform.spec import DEFAULT_PLATFORM_CONFIG, PlatformConfig

TOKEN_ENV = "DMP_XRAY_TOKEN"
DAGSTER_URL_ENV = "DMP_DAGSTER_URL"
STATE_DIR_ENV = "DMP_XRAY_STATE_DIR"
IDLE_MINUTES_ENV = "DMP_XRAY_NOTEBOOK_IDLE_MINUTES"
NOTEBOOK_IMAGE_ENV = "DMP_XRAY_NOTEBOOK_IMAGE"
ALLOWED_HOSTS_ENV = "DMP_XRAY_ALLOWED_HOSTS"
DEFAULT_DAGSTER_URL = "http://localhost:3000"
# The names a browser on the same machine uses for a loopback listener (Host header, port aside;
# an IPv6 address keeps its brackets, as in the header).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
DEFAULT_LISTEN_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether a listener on ``host`` (a name or an address, IPv6 with or without brackets) is
    reachable from this machine only: one of :data:`LOOPBACK_HOSTS` or any loopback address."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_allowed_hosts(value: str | Iterable[str], source: str = ALLOWED_HOSTS_ENV) -> tuple[str, ...]:
    """Host names a request's ``Host`` header may carry, from a comma or space separated list.

    A name is matched without its port; ``*.example.com`` matches every subdomain. A lone ``*``
    is refused: it would turn the check (against DNS rebinding) off.

    Raises:
        ValueError: a pattern is ``*``, has a ``*`` elsewhere than a leading ``*.``, or has a port;
            the message names ``source``.
    """
    items = value.replace(",", " ").split() if isinstance(value, str) else [v.strip() for v in value]
    hosts: list[str] = []
    for item in (i.lower() for i in items if i):
        if item == "*":
            raise ValueError(f"{source}: '*' would admit any Host header; name the hosts clients use")
        if "*" in item[1:] or (item.startswith("*") and not item.startswith("*.")):
            raise ValueError(f"{source}: {item!r}: a wildcard must be a leading '*.' (e.g. *.example.com)")
        bare = item.strip("[]")
        if _is_ipv6(bare):
            hosts.append(f"[{bare}]")
            continue
        if "/" in item or ":" in item or "[" in item:
            raise ValueError(f"{source}: {item!r}: give a host name or address, without scheme or port")
        hosts.append(item)
    return tuple(dict.fromkeys(hosts))


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def default_state_dir() -> Path:
    """Where notebook records live: ``$DMP_XRAY_STATE_DIR`` or ``~/.dmp/xray``."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".dmp" / "xray")


@dataclass(frozen=True)
class XRaySettings:
    """How the dashboard behaves.

    Attributes:
        token: Bearer token that mutating calls, and reads of job output and notebooks, must
            present; ``None`` makes the dashboard read-only and hides job logs and details from
            everyone. Never rendered into a page or a response, never written to a log.
        allowed_hosts: Names a request's ``Host`` header may carry (``*.example.com`` for
            subdomains); others get 400, which stops DNS rebinding. ``None``: not configured, the
            loopback names (see :attr:`trusted_hosts`); ``dmp xray`` refuses a non-loopback
            listener then.
        listen_host: The interface the server listens on (``dmp xray --host``); a loopback
            address other than ``127.0.0.1`` is admitted as a Host name by default too.
        dagster_url: Base URL of the Dagster webserver; run links are ``<url>/runs/<run id>``.
        refresh_s: How often the list page refreshes itself (seconds).
        cache_ttl_s: How long one backend listing is reused as it is (0: list on every request).
        max_stale_s: Up to this age a listing is still served while a fresh one is fetched in
            the background (stale while revalidate); older ones are listed before answering.
        notebook_idle_timeout_s: A notebook idle this long is stopped (by JupyterLab itself and
            by the dashboard's reaper).
        reaper_interval_s: How often the reaper looks at notebooks.
        state_dir: Notebook records (and local notebooks' working dirs).
        notebook_image: Image of notebook pods on KubeRay; ``None``: the cluster's image, else
            the image of the ``cpu`` pool the pod runs on (``images.for_pool``).
        log_lines: Lines of log tail shown on a cluster page.
        delete_timeout_s: How long a delete waits for the cluster to be gone.
        platform_config: Catalog (prices), policy (pod security) and Ray images in effect; ``dmp
            xray`` passes the platform core's.
        ray_auth_mode: ``RAY_AUTH_MODE`` for Jobs API clients and notebooks (``dmp xray``: the core's).
    """

    token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] | None = None
    listen_host: str = DEFAULT_LISTEN_HOST
    dagster_url: str = DEFAULT_DAGSTER_URL
    refresh_s: float = 10.0
    cache_ttl_s: float = 2.0
    max_stale_s: float = 30.0
    notebook_idle_timeout_s: int = 3600
    reaper_interval_s: float = 30.0
    state_dir: Path = field(default_factory=default_state_dir)
    notebook_image: str | None = None
    log_lines: int = 200
    delete_timeout_s: float = 120.0
    platform_config: PlatformConfig = DEFAULT_PLATFORM_CONFIG
    ray_auth_mode: str = "disabled"

    def __post_init__(self) -> None:
        if self.allowed_hosts is not None:  # normalised (lower case, bracketed IPv6); none given is unset
            hosts = parse_allowed_hosts(self.allowed_hosts, "allowed_hosts")
            object.__setattr__(self, "allowed_hosts", hosts or None)

    @property
    def trusted_hosts(self) -> tuple[str, ...]:
        """The hosts the app admits: :attr:`allowed_hosts`; when unset, :data:`LOOPBACK_HOSTS` plus
        the listen host when it is another loopback address (``--host 127.0.0.2``)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if self.listen_host in LOOPBACK_HOSTS or not is_loopback(self.listen_host):
            return LOOPBACK_HOSTS
        return tuple(dict.fromkeys((*LOOPBACK_HOSTS, *parse_allowed_hosts(self.listen_host, "listen_host"))))

    @property
    def listens_beyond_loopback(self) -> bool:
        """Whether clients on other machines can reach the listener (``--host 0.0.0.0``)."""
        return not is_loopback(self.listen_host)

    @property
    def writes_enabled(self) -> bool:
        """Whether mutating actions are possible at all (a token is configured)."""
        return bool(self.token)

    @classmethod
    def from_env(cls, **overrides: object) -> XRaySettings:
        """Settings from ``DMP_XRAY_TOKEN``, ``DMP_XRAY_ALLOWED_HOSTS``, ``DMP_DAGSTER_URL``,
        ``DMP_XRAY_STATE_DIR``, ``DMP_XRAY_NOTEBOOK_IDLE_MINUTES`` and ``DMP_XRAY_NOTEBOOK_IMAGE``;
        ``overrides`` win.

        Raises:
            ValueError: a variable's value is invalid (the message names it).
        """
        values: dict[str, object] = {}
        if os.environ.get(TOKEN_ENV):
            values["token"] = os.environ[TOKEN_ENV]
        if os.environ.get(ALLOWED_HOSTS_ENV, "").strip():
            values["allowed_hosts"] = parse_allowed_hosts(os.environ[ALLOWED_HOSTS_ENV])
        if os.environ.get(DAGSTER_URL_ENV):
            values["dagster_url"] = os.environ[DAGSTER_URL_ENV]
        if os.environ.get(IDLE_MINUTES_ENV):
            try:
                values["notebook_idle_timeout_s"] = int(float(os.environ[IDLE_MINUTES_ENV]) * 60)
            except ValueError:
                raise ValueError(f"{IDLE_MINUTES_ENV}: not a number: {os.environ[IDLE_MINUTES_ENV]!r}") from None
        if os.environ.get(NOTEBOOK_IMAGE_ENV):
            values["notebook_image"] = os.environ[NOTEBOOK_IMAGE_ENV]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
