"""The address a worker advertises: where its tasks' published ports answer.

Unless `kube worker --advertise-address` says otherwise, it is the source address of
the host's route to the broker: the address other machines that reach the broker most
likely reach this one at. Finding it sends nothing: connecting a UDP socket only asks
the kernel which route, and which source address, it would use.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

from shared.errors import SettingsError
from shared.wire import host_address

log = logging.getLogger(__name__)


def parse(text: str) -> str:
    """An address given by a person: an IP address or a host name, or SettingsError."""
    try:
        return host_address(text.strip())
    except ValueError as exc:
        raise SettingsError(f"--advertise-address: {exc}") from exc


def detect(amqp_url: str) -> str | None:
    """The source address of this host's route to the broker in `amqp_url`; None (logged)
    when there is no route or the broker's name does not resolve."""
    parts = urlsplit(amqp_url)
    host, port = parts.hostname or "localhost", parts.port or 5672
    try:
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(target)  # UDP: picks the route, sends nothing
            source = str(probe.getsockname()[0])
    except OSError as exc:
        log.warning(
            "worker: cannot find this host's address on the route to %s (%s); advertising"
            " none: give --advertise-address",
            host,
            exc,
        )
        return None
    return host_address(source.partition("%")[0])  # an IPv6 scope (fe80::1%eth0) is local
