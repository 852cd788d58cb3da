"""A worker's answer to a logs request: the container's output, cut to fit one message."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from shared.codec import encode
from shared.errors import RuntimeFailure
from shared.messages import LogsReply, LogsRequest
from shared.wire import MAX_BODY_BYTES

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 512 * 1024
"""A logs reply carries at most the last 512 KiB of output; use --tail for a window."""


def logs_reply(
    node: str, request: LogsRequest, read: Callable[[str, int, int | None, int], bytes]
) -> LogsReply:
    """Read the output with `read(task_id, attempt, tail, limit)` and answer with its end.

    Output is decoded as UTF-8 (bad bytes replaced). JSON may escape a byte into six, so
    the text is cut again, from the front, until the encoded reply fits in one message.
    """
    try:
        data = read(request.task_id, request.attempt, request.tail, MAX_LOG_BYTES)[-MAX_LOG_BYTES:]
    except RuntimeFailure as exc:
        return _reply(node, request, error=str(exc))
    except Exception as exc:  # the asker hears of it rather than waiting in vain
        log.exception("task %s: reading its logs failed", request.task_id)
        return _reply(node, request, error=f"reading the logs failed on {node}: {exc!r}")
    text = data.decode("utf-8", errors="replace")
    reply = _reply(node, request, output=text)
    while len(encode(reply)) > MAX_BODY_BYTES:
        text = text[len(text) // 2 :]
        reply = _reply(node, request, output=text)
    return reply


def _reply(
    node: str, request: LogsRequest, output: str | None = None, error: str | None = None
) -> LogsReply:
    return LogsReply(
        node=node,
        at=datetime.now(UTC),
        request_id=request.request_id,
        task_id=request.task_id,
        output=output,
        error=error,
    )
