"""The pika connection of a bus: its parameters, and pika's errors translated into ours."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import (
    AMQPConnectorException,
    AMQPConnectorStackTimeout,
)

from shared.errors import (
    BrokerUnreachable,
    ConnectionLost,
    LoginRefused,
    MessagingError,
    TlsRefused,
    VhostRefused,
)
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


def address_of(url: str) -> str:
    """HOST:PORT of a broker URL, as pika reads it (the scheme's port when none is given)."""
    params = pika.URLParameters(url)
    host = f"[{params.host}]" if ":" in params.host else params.host
    return f"{host}:{params.port}"


def refusal(exc: BaseException, url: str) -> ConnectionLost:
    """What a failed connect to `url` means, as ours: the login, the vhost, or no broker."""
    params = pika.URLParameters(url)
    user = str(getattr(params.credentials, "username", ""))
    if isinstance(
        exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError
    ):
        return LoginRefused(user, address_of(url))
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return VhostRefused(params.virtual_host, user, address_of(url))
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):  # it answered: not unreachable
            why = cause.verify_message or str(cause.reason)
            return TlsRefused(address_of(url), f"SSLCertVerificationError, {why}")
    return BrokerUnreachable((address_of(url),), why_unreachable(exc))


def why_unreachable(exc: BaseException) -> str:
    """The cause of a failed connect, in a few words: pika wraps the socket's error in its
    own, once or twice (as an argument, or as `exception`)."""
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "no such host"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        if isinstance(cause, AMQPConnectorStackTimeout | TimeoutError | socket.timeout):
            return "it accepts connections but does not speak AMQP in time"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return exc.__class__.__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    yield exc
    inner = [getattr(exc, "exception", None), *exc.args]  # pika's connector errors keep it
    for arg in inner:
        if isinstance(arg, BaseException):
            yield from _chain(arg)
