"""Connection settings shared by every component, read once from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from shared.errors import SettingsError

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


@dataclass(frozen=True)
class Settings:
    """How to reach the broker and how long to wait for answers."""

    amqp_url: str = DEFAULT_AMQP_URL
    request_timeout: float = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.amqp_url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise SettingsError(
                f"{redact(self.amqp_url)!r} is not an AMQP URL: give"
                " amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps:// for TLS)"
            )
        if not (math.isfinite(self.request_timeout) and self.request_timeout > 0):
            raise SettingsError(
                f"the timeout must be a number of seconds above 0, not {self.request_timeout}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build from KUBE_AMQP_URL, KUBE_TIMEOUT and KUBE_AMQP_CA; flags win when given."""
        env = os.environ if env is None else env
        timeout = env.get("KUBE_TIMEOUT", "10")
        try:
            seconds = float(timeout)
        except ValueError as exc:
            raise SettingsError(f"KUBE_TIMEOUT={timeout!r} is not a number of seconds") from exc
        values: dict[str, object] = {
            "amqp_url": env.get("KUBE_AMQP_URL", DEFAULT_AMQP_URL),
            "request_timeout": seconds,
            "ca_file": env.get("KUBE_AMQP_CA") or None,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]


def redact(url: str) -> str:
    """The URL with its password replaced, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
