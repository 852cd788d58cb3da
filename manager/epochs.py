"""The leader's epoch, stamped on every dispatch as it is published.

Dispatches are recorded in the outbox when decided, and published after their batch
commits, or by the next leader after a takeover: the epoch they carry must be that of the
manager that publishes them, so it is written at publish time, in place. Every dispatch
kind that carries one has `epoch` as its second key (shared/messages.py), so the stamp
rewrites a known prefix of the body, without parsing it.
"""

from __future__ import annotations

import re

_KINDS = (
    rb"run|stop|logs|files|cluster|disowned|remove-orphan|adopt-orphan|stream-start|stream-input"
    rb"|remove-volume"
)
STAMPED = re.compile(rb'\A\{"kind":"(?:' + _KINDS + rb')","epoch":(\d+),')
"""The start of a dispatch that carries an epoch, as shared.codec.encode writes it."""


def stamp(body: bytes, epoch: int) -> bytes:
    """The body with its epoch set to `epoch` (a body that carries none: unchanged)."""
    found = STAMPED.match(body)
    if found is None:
        return body
    start, end = found.span(1)
    return b"%s%d%s" % (body[:start], epoch, body[end:])
