"""A worker's logs reply: the output's end, cut to fit one message, or the engine's error."""

from __future__ import annotations

import pytest

from shared.codec import encode
from shared.errors import RuntimeFailure
from shared.messages import LogsRequest
from shared.wire import MAX_BODY_BYTES
from worker.log_reply import MAX_LOG_BYTES, logs_reply

REQUEST = LogsRequest(
    request_id="r1",
    task_id="web-1",
    attempt=3,
    tail=5,
    ttl=8,
)


def test_the_reply_carries_the_output_of_the_asked_attempt() -> None:
    asked = []

    def read(task_id: str, attempt: int, tail: int | None, limit: int) -> bytes:
        asked.append((task_id, attempt, tail, limit))
        return b"line 1\nline 2\n\xff\n"

    reply = logs_reply("n1", REQUEST, read)
    assert asked == [("web-1", 3, 5, MAX_LOG_BYTES)]
    assert (reply.node, reply.request_id, reply.task_id) == ("n1", "r1", "web-1")
    assert reply.output == "line 1\nline 2\n\ufffd\n"  # bad UTF-8 replaced, not fatal
    assert reply.error is None


def test_an_engine_failure_is_the_replys_error() -> None:
    def read(task_id: str, attempt: int, tail: int | None, limit: int) -> bytes:
        raise RuntimeFailure("no container for web-1 attempt 3")

    reply = logs_reply("n1", REQUEST, read)
    assert reply.output is None
    assert reply.error == "no container for web-1 attempt 3"


def test_long_output_keeps_its_end_within_the_limit() -> None:
    data = b"x" * MAX_LOG_BYTES + b"the end\n"
    reply = logs_reply("n1", REQUEST, lambda *_: data)
    assert reply.output is not None
    assert reply.output.endswith("the end\n")
    assert len(reply.output) == MAX_LOG_BYTES


def test_output_that_escapes_badly_is_cut_until_the_message_fits() -> None:
    # each control byte becomes six in JSON (\u0001): 512 KiB of them would be 3 MiB
    data = b"\x01" * MAX_LOG_BYTES + b"tail\n"
    reply = logs_reply("n1", REQUEST, lambda *_: data)
    assert len(encode(reply)) <= MAX_BODY_BYTES
    assert reply.output is not None and reply.output.endswith("tail\n")


def test_an_unexpected_failure_is_answered_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def read(task_id: str, attempt: int, tail: int | None, limit: int) -> bytes:
        raise ValueError("engine sent garbage")

    reply = logs_reply("n1", REQUEST, read)
    assert reply.error is not None
    assert "reading the logs failed on n1" in reply.error and "engine sent garbage" in reply.error
    assert "reading its logs failed" in caplog.text
