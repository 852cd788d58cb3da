"""Connection settings shared by every component, read once from the environment."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import pika

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


SEPARATORS = re.compile(r"\s*,\s*|\s+")
"""Between broker URLs: a comma (spaces around it dropped) or white space (a newline): a
URL holds neither, written plainly."""

LISTED = 3
"""How many URLs a message names before it counts the rest: a list of hundreds would make
a line of tens of kilobytes."""

BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def split_urls(text: str) -> tuple[str, ...]:
    """The broker URLs in `text` (separated by commas or white space), each checked; a
    SettingsError names the first that is not an AMQP URL, without its password."""
    if not text.strip():
        raise SettingsError(
            "the broker URL is empty (KUBE_AMQP_URL set to nothing, or --amqp-url ''): give"
            " amqp://USER:PASSWORD@HOST:PORT/VHOST, or unset it for the default broker on"
            " localhost"
        )
    urls = tuple(SEPARATORS.split(text.strip()))
    # First, pieces that are not URLs at all: most likely the tail of a password cut at a
    # comma, whose head then ends the piece before. Neither is printed: either may be a
    # password; they are named by their place only.
    for position, url in enumerate(urls, start=1):
        where = _where(position, len(urls))
        if not url:
            raise SettingsError(
                f"{where} is empty: separate broker URLs with single commas"
                " (write a comma inside a URL as %2C)"
            )
        if "://" not in url:
            raise SettingsError(
                f"{where} does not begin with amqp:// or amqps://: give"
                " amqp://USER:PASSWORD@HOST:PORT/VHOST; a comma inside a password must be"
                " written %2C, a space %20"
            )
    for position, url in enumerate(urls, start=1):
        _check(url, _where(position, len(urls)))
    users = {_user(url) for url in urls}
    if len(users) > 1:
        # kube stamps its messages with its login's user_id, which the broker checks
        raise SettingsError(
            f"the broker URLs log in as different users ({', '.join(sorted(users))}):"
            " give every URL of a component the same user and password"
        )
    vhosts = {_vhost(url) for url in urls}
    if len(vhosts) > 1:
        raise SettingsError(
            f"the broker URLs name different vhosts ({', '.join(sorted(vhosts))}): the URLs"
            " of a component must be nodes of one cluster, and a vhost's queues are the"
            " same on every node of a cluster; different vhosts would be different clusters"
        )
    return urls


def _where(position: int, count: int) -> str:
    return f"broker URL {position} of {count}" if count > 1 else "the broker URL"


def _check(url: str, where: str) -> None:
    """A SettingsError naming `where` if `url` is not one pika would connect to."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address
        raise SettingsError(f"{where}, {redact(url)!r}, cannot be read: {exc}") from None
    if "@" not in parts.netloc and "@" in url:
        # a '/', '?' or '#' in the password ended the host part early: what would be
        # shown as the host or the port is the password's beginning
        raise SettingsError(
            f"{where} cannot be read: write a '/', '?' or '#' inside a password as %2F, %3F or %23"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"{where}, {redact(url)!r}, has a bad port: {exc}") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise SettingsError(
            f"{where}, {redact(url)!r}, is not an AMQP URL: give"
            " amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps:// for TLS)"
        )
    if port == 0:
        raise SettingsError(f"{where}, {redact(url)!r}, has port 0")
    if BAD_PERCENT.search(parts.netloc.rpartition("@")[0]):
        raise SettingsError(
            f"{where}, {redact(url)!r}, has a '%' in its user or password that is not"
            " followed by two hex digits: write a '%' itself as %25"
        )
    if parts.username is not None and parts.password is None:
        # pika fails on it with a TypeError when it connects
        raise SettingsError(
            f"{where}, {redact(url)!r}, has a user and no password: give USER:PASSWORD@"
        )
    try:
        pika.URLParameters(url)  # its options (?heartbeat=...) as the connection reads them
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{where}, {redact(url)!r}, has a bad option: {exc}") from None


def _user(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")  # pika's default: guest


def _vhost(url: str) -> str:
    return unquote(urlsplit(url).path[1:]) or "/"  # pika's default: /


def redact(text: str) -> str:
    """The URL, or URLs (separated by commas or white space), with every password replaced,
    fit for a log line; past a few URLs, the rest are counted, not listed."""
    urls = [_redact_one(url) for url in SEPARATORS.split(text.strip())]
    if len(urls) > LISTED + 1:
        return f"{','.join(urls[:LISTED])} (and {len(urls) - LISTED} more)"
    return ",".join(urls)


def _redact_one(url: str) -> str:
    """One URL without its password: everything between the user's name and the last '@'
    goes, so a password with an unencoded '@', '/' or '#' goes too. A piece without a
    scheme (the tail of a password cut at a comma) keeps only what follows its last '@'."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
