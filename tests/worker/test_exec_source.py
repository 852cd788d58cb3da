"""Exec sessions on the worker (worker/exec_source.py): the policy first, input that comes
before the command started, whole UTF-8 characters, on the mock runtime."""

from __future__ import annotations

import pytest

from shared.models import TaskSpec
from shared.sessions import EndReason, ExecParams, StreamFrame, StreamInput, StreamStart
from tests.support.waiting import wait_for
from worker.exec_source import complete_utf8, exec_opener
from worker.policy import WorkerPolicy
from worker.runtime.mock import MockRuntime
from worker.streams import Streams, opener

SESSION = "1" * 32


def exec_start() -> StreamStart:
    params = ExecParams(command=["cat"], stdin=True)
    return StreamStart(session=SESSION, task_id="t", attempt=1, exec=params)


def run(policy: WorkerPolicy, *inputs: StreamInput) -> list[StreamFrame]:
    """The frames of one exec session in a running mock container, given the inputs at once
    (before the command could start), until the session ends."""
    runtime = MockRuntime("n1")
    runtime.start("t", 1, TaskSpec(name="t", image="i"))
    sent: list[StreamFrame] = []
    streams = Streams(
        "n1", opener(runtime, exec_opener(runtime, policy, "n1")), sent.append, lambda: None
    )
    streams.start(exec_start())
    for message in inputs:
        streams.heard(message)
    wait_for(lambda: (streams.flush(), not streams.sessions)[1], "the session to end")
    return sent


def test_without_allow_exec_nothing_runs_and_the_end_says_not_allowed() -> None:
    sent = run(WorkerPolicy())
    end = sent[-1].end
    assert end is not None and end.reason == EndReason.NOT_ALLOWED
    assert "security policy of n1" in (end.error or "")
    assert all(not frame.chunks for frame in sent)


def test_input_sent_before_the_command_started_reaches_it_in_order() -> None:
    sent = run(
        WorkerPolicy(allow_exec=True),
        StreamInput(session=SESSION, stdin="hé"),
        StreamInput(session=SESSION, stdin="llo\n"),
        StreamInput(session=SESSION, eof=True),
    )
    assert "".join(c.data for f in sent for c in f.chunks) == "héllo\n"
    end = sent[-1].end
    assert end is not None and (end.reason, end.exit_code) == (EndReason.EXITED, 0)


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (b"abc", 3),
        ("é".encode(), 2),
        ("é".encode()[:1], 0),
        (b"ab" + "€".encode()[:2], 2),
        (b"ab" + "€".encode(), 5),
        ("😀".encode()[:3], 0),
        ("😀".encode(), 4),
        (b"\x80\x80\x80\x80", 4),  # not UTF-8: passed on as it is
        (b"", 0),
    ],
)
def test_output_is_cut_after_whole_characters_only(data: bytes, whole: int) -> None:
    assert complete_utf8(data) == whole
