"""The pika connection of a bus: its parameters, and pika's errors translated into ours."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from shared.errors import ConnectionLost, MessagingError
from shared.settings import Settings

# Errors after which the connection is gone and must be made again. A broker shutdown
# (ConnectionClosedByBroker 320 CONNECTION_FORCED) is one of them, not a fatal error.
# pika raises AMQPConnectorException (not an AMQPError) when a peer accepts TCP and never
# answers AMQP (another server on the port, a frozen node): AMQPConnectorStackTimeout.
RECONNECT_ERRORS = (
    AMQPConnectorException,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)

# The same, once translated: what the bus loop reconnects on, whichever side raised it.
LOST = (*RECONNECT_ERRORS, ConnectionLost)


HEARTBEAT = 30
"""Seconds of the AMQP heartbeat the connection asks for (the broker drops a peer silent
for about two of them); a manager asks for less (manager/server.py: tied to its lease)."""


MIN_SILENCE = 5.0
"""Seconds, at least, a component waits for the broker to confirm what it published
before it drops the connection and makes a new one (see `shared.bus.Bus`)."""


def silent_after(heartbeat_interval: float) -> float:
    """How long without a confirm means the connection is dead: three heartbeats (the
    manager calls a node down after about as long), or MIN_SILENCE."""
    return max(3 * heartbeat_interval, MIN_SILENCE)


def connection_parameters(
    settings: Settings, name: str, url: str | None = None, heartbeat: int = HEARTBEAT
) -> pika.URLParameters:
    """pika parameters for one of the settings' URLs (the first unless given): heartbeats
    on, TLS for amqps://."""
    url = settings.amqp_urls[0] if url is None else url
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    if url.startswith("amqps://"):
        context = ssl.create_default_context(cafile=settings.ca_file)
        params.ssl_options = pika.SSLOptions(context, params.host)
    return params


def abandon(connection: pika.BlockingConnection) -> None:
    """Drop a connection at once, without AMQP's closing handshake.

    On a link that went silent (a partition), close() sends Connection.Close and waits for
    the broker's answer, which cannot come: 70 s measured, until pika's heartbeat check
    gives up. pika has no public abort; ending the stream is what it does itself when a
    heartbeat times out.
    """
    try:
        connection._impl._terminate_stream(pika.exceptions.StreamLostError("abandoned: silent"))
        connection.process_data_events(time_limit=0)
    except Exception:  # noqa: BLE001 - the stream ending raises; it is what we asked for
        return


def user_of(settings: Settings) -> str:
    """The broker user the settings' (first) URL logs in as."""
    return str(pika.URLParameters(settings.amqp_urls[0]).credentials.username)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise pika's errors (and socket errors) met while doing `what` as ours."""
    try:
        yield
    except RECONNECT_ERRORS as exc:
        raise ConnectionLost(f"{what}: {exc.__class__.__name__}: {exc}") from exc
    except pika.exceptions.AMQPError as exc:
        raise MessagingError(f"{what}: {exc!r}") from exc
