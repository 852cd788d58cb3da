"""Connection settings shared by every component, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


@dataclass(frozen=True)
class Settings:
    """How to reach the broker and how long to wait for answers."""

    amqp_url: str = DEFAULT_AMQP_URL
    request_timeout: float = 10.0
    ca_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build from KUBE_AMQP_URL, KUBE_TIMEOUT and KUBE_AMQP_CA; flags win when given."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "amqp_url": env.get("KUBE_AMQP_URL", DEFAULT_AMQP_URL),
            "request_timeout": float(env.get("KUBE_TIMEOUT", "10")),
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
