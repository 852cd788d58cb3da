"""Connection settings shared by every component, read once from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from shared.errors import SettingsError

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


@dataclass(frozen=True)
class Settings:
    """How to reach the broker and how long to wait for answers."""

    amqp_url: str = DEFAULT_AMQP_URL
    """One broker URL, or several of one RabbitMQ cluster separated by commas."""
    request_timeout: float = 10.0
    ca_file: str | None = None
    amqp_urls: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """`amqp_url` split and checked: the brokers in the order to try them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "amqp_urls", split_urls(self.amqp_url))
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
        urls = overrides.get("amqp_url")
        if isinstance(urls, list | tuple):  # a repeated --amqp-url
            overrides = {**overrides, "amqp_url": ",".join(urls) if urls else None}
        values: dict[str, object] = {
            "amqp_url": env.get("KUBE_AMQP_URL", DEFAULT_AMQP_URL),
            "request_timeout": seconds,
            "ca_file": env.get("KUBE_AMQP_CA") or None,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]


def split_urls(text: str) -> tuple[str, ...]:
    """The broker URLs in `text` (separated by commas), each checked; a SettingsError
    names the first that is not an AMQP URL, without its password."""
    urls = tuple(item.strip() for item in text.split(","))
    for position, url in enumerate(urls, start=1):
        where = f"broker URL {position} of {len(urls)}" if len(urls) > 1 else "the broker URL"
        if not url:
            raise SettingsError(
                f"{where} is empty: separate broker URLs with single commas"
                " (write a comma inside a URL as %2C)"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SettingsError(f"{where}, {redact(url)!r}, has a bad port: {exc}") from exc
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise SettingsError(
                f"{where}, {redact(url)!r}, is not an AMQP URL: give"
                " amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps:// for TLS)"
            )
        if port == 0:
            raise SettingsError(f"{where}, {redact(url)!r}, has port 0")
    users = {urlsplit(url).username or "guest" for url in urls}  # pika's default: guest
    if len(users) > 1:
        # kube stamps its messages with its login's user_id, which the broker checks
        raise SettingsError(
            f"the broker URLs log in as different users ({', '.join(sorted(users))}):"
            " give every URL of a component the same user and password"
        )
    return urls


def redact(url: str) -> str:
    """The URL (or comma-separated URLs) with passwords replaced, fit for a log line."""
    if "," in url:
        return ",".join(redact(item.strip()) for item in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # as written: a bad port stays visible
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
