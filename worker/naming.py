"""A worker's default node name: unique per host, so that two hosts never share one.

The host name, unless it is one that many hosts have (a fresh image's `localhost`, a
container's `debian`): then the host name and the first 8 characters of the machine id
(/etc/machine-id), as `localhost-3d1219c7`. Cut to what a node name may be (63
characters of `A-Za-z0-9_.-`).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from shared.wire import MAX_ID_LENGTH

GENERIC = frozenset(
    {"localhost", "localhost.localdomain", "debian", "ubuntu", "raspberrypi", "ip6-localhost"}
)
"""Host names many machines have; a node named after one would clash."""

MACHINE_ID = Path("/etc/machine-id")


def default_name(hostname: str, machine_id: str | None) -> str:
    """The node name for a host with this name and machine id (None: unknown)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname).lstrip("_.-") or "node"
    if base.lower() in GENERIC and machine_id:
        base = f"{base}-{machine_id[:8]}"
    return base[:MAX_ID_LENGTH]


def this_host() -> str:
    """The default node name of the host this runs on."""
    try:
        machine_id: str | None = MACHINE_ID.read_text().strip() or None
    except OSError:
        machine_id = None
    return default_name(socket.gethostname(), machine_id)
