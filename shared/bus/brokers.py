"""Several brokers of one RabbitMQ cluster: which to try, in what order, and the first that
answers.

Every component is given one URL or several (KUBE_AMQP_URL with commas, a repeated
--amqp-url). It connects to the first that answers; after a connection is lost it starts
with the broker after the one it was on, so a stopped node is tried last, not first.
pika can take a list of parameters itself, but it always starts from the head of the list
and does not say which one it reached; both matter here (logs, the next reconnect).
"""

from __future__ import annotations

import logging
from typing import NoReturn

import pika

from shared.bus.connection import HEARTBEAT, RECONNECT_ERRORS, connection_parameters, refusal
from shared.errors import BrokerUnreachable, ConnectionLost
from shared.settings import Settings, redact

log = logging.getLogger("shared.bus")


def rotation(count: int, start: int) -> list[int]:
    """The indexes of `count` brokers, beginning at `start` and wrapping round."""
    return [(start + step) % count for step in range(count)]


class Brokers:
    """The brokers of the settings, and which to try next."""

    def __init__(self, settings: Settings, heartbeat: int = HEARTBEAT) -> None:
        self._settings = settings
        self._heartbeat = heartbeat
        self._next = 0
        self.current: str | None = None
        """The URL of the connection last made; None before it, and while none answers."""

    @property
    def urls(self) -> tuple[str, ...]:
        return self._settings.amqp_urls

    def connect(self, name: str) -> pika.BlockingConnection:
        """A connection to the first broker that answers, beginning after the last one used.

        When none does: a broker's refusal of the login, the vhost or the TLS handshake
        (LoginRefused, VhostRefused, TlsRefused) if one answered so, else BrokerUnreachable
        naming each address."""
        urls = self.urls
        self.current = None
        failures: list[tuple[ConnectionLost, BaseException]] = []
        for index in rotation(len(urls), self._next):
            url = urls[index]
            try:
                connection = pika.BlockingConnection(
                    connection_parameters(self._settings, name, url, self._heartbeat)
                )
            except RECONNECT_ERRORS as exc:
                if len(urls) > 1:
                    log.warning(
                        "%s: broker %s does not answer (%s); trying the next",
                        name,
                        redact(url),
                        exc.__class__.__name__,
                    )
                failures.append((refusal(exc, url), exc))
                continue
            self._next = (index + 1) % len(urls)
            self.current = url
            return connection
        self._fail(failures)

    @staticmethod
    def _fail(failures: list[tuple[ConnectionLost, BaseException]]) -> NoReturn:
        """Raise the most telling of the failures: a broker that answered and refused says
        more than one that did not answer."""
        refused = [pair for pair in failures if not isinstance(pair[0], BrokerUnreachable)]
        if refused:
            error, cause = refused[-1]
            raise error from cause
        unreachable = [error for error, _ in failures if isinstance(error, BrokerUnreachable)]
        addresses = tuple(address for error in unreachable for address in error.addresses)
        raise BrokerUnreachable(addresses, unreachable[-1].cause) from failures[-1][1]
