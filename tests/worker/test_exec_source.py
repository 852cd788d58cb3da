"""Exec sessions on the worker (worker/exec_source.py): the policy first, input that comes
before the command started, whole UTF-8 characters, on the mock runtime."""

from __future__ import annotations

import json
import threading

import pytest

from shared.codec import encode
from shared.models import TaskSpec
from shared.sessions import (
    INPUT_BUFFER_MAX,
    MAX_INPUT_DATA,
    Encoding,
    EndReason,
    ExecParams,
    StreamFrame,
    StreamInput,
    StreamStart,
    packed,
)
from tests.support.waiting import wait_for
from worker.exec_source import ExecSource, complete_utf8, exec_opener
from worker.policy import WorkerPolicy
from worker.runtime.base import ExecOptions
from worker.runtime.mock import MockRuntime
from worker.runtime.mock_exec import MockExecSession
from worker.streams import Streams, opener

SESSION = "1" * 32


def exec_start(binary: bool = False) -> StreamStart:
    params = ExecParams(command=["cat"], stdin=True)
    return StreamStart(session=SESSION, task_id="t", attempt=1, exec=params, binary=binary)


def run(policy: WorkerPolicy, *inputs: StreamInput, binary: bool = False) -> list[StreamFrame]:
    """The frames of one exec session in a running mock container, given the inputs at once
    (before the command could start), until the session ends."""
    runtime = MockRuntime("n1")
    runtime.start("t", 1, TaskSpec(name="t", image="i"))
    sent: list[StreamFrame] = []
    streams = Streams(
        "n1", opener(runtime, exec_opener(runtime, policy, "n1")), sent.append, lambda: None
    )
    streams.start(exec_start(binary))
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


class StuckStdin(MockExecSession):
    """A command that takes no input until `taking` is set (as `cat` whose output waits)."""

    def __init__(self) -> None:
        super().__init__(ExecOptions(command=("cat",), stdin=True), 0)
        self.taking = threading.Event()

    def write(self, data: bytes) -> None:
        self.taking.wait()
        super().write(data)

    def close(self) -> None:
        self.taking.set()  # a kill ends a write in progress, as a closed socket does
        super().close()


def stuck_streams() -> tuple[Streams, StuckStdin, list[StreamFrame]]:
    command = StuckStdin()
    sent: list[StreamFrame] = []

    def open_exec(start: StreamStart) -> ExecSource:
        return ExecSource(command, start.task_id, start.session[:12])

    streams = Streams("n1", opener(MockRuntime("n1"), open_exec), sent.append, lambda: None)
    streams.start(exec_start(binary=True))
    return streams, command, sent


def heard_at_once(streams: Streams, message: StreamInput) -> None:
    """The bus thread's call returns although the command takes no input."""
    done = threading.Event()
    threading.Thread(target=lambda: (streams.heard(message), done.set()), daemon=True).start()
    assert done.wait(5), "the bus thread waited on the command's input"


def test_input_a_command_does_not_take_never_holds_up_the_bus_thread() -> None:
    streams, command, sent = stuck_streams()
    try:
        wait_for(lambda: streams.sessions[SESSION]._source, "the command to start")
        heard_at_once(streams, StreamInput(session=SESSION, stdin="x" * 1000))
        heard_at_once(streams, StreamInput(session=SESSION, stdin="y" * 24))
        streams.flush()
        assert all(frame.input_ack == 0 for frame in sent)  # nothing taken yet

        # once the command takes it, a frame says how much (credit for the client's input)
        command.taking.set()

        def acked() -> int | None:
            streams.flush()
            return sent[-1].input_ack if sent[-1].input_ack == 1024 else None

        wait_for(acked, "a frame that says the command took 1024 bytes")
        assert b"".join(c.data.encode() for f in sent for c in f.chunks) == b"x" * 1000 + b"y" * 24
    finally:
        command.taking.set()
        streams.close()


def test_a_client_that_ignores_input_ack_has_its_session_ended() -> None:
    streams, command, sent = stuck_streams()
    try:
        wait_for(lambda: streams.sessions[SESSION]._source, "the command to start")
        piece = "z" * MAX_INPUT_DATA
        for _ in range(INPUT_BUFFER_MAX // MAX_INPUT_DATA + 2):
            heard_at_once(streams, StreamInput(session=SESSION, stdin=piece))
        wait_for(lambda: (streams.flush(), not streams.sessions)[1], "the session to end")
        end = next(frame.end for frame in sent if frame.end is not None)
        assert end.reason == EndReason.FAILED
        assert f"more than {INPUT_BUFFER_MAX} bytes of stdin" in (end.error or "")
    finally:
        command.taking.set()
        streams.close()


BYTES = bytes(range(256)) * 3


def test_a_binary_session_carries_any_bytes_exactly_both_ways() -> None:
    text, encoding = packed(BYTES)
    sent = run(
        WorkerPolicy(allow_exec=True),
        StreamInput(session=SESSION, stdin=text, encoding=encoding),
        StreamInput(session=SESSION, eof=True),
        binary=True,
    )
    assert b"".join(c.raw() for f in sent for c in f.chunks) == BYTES
    assert {c.encoding for f in sent for c in f.chunks} == {Encoding.BASE64}
    assert sent[-1].input_ack == len(BYTES)


def test_a_client_that_reads_text_only_gets_text_without_the_new_fields() -> None:
    text, encoding = packed(b"ok\xff\n")
    sent = run(
        WorkerPolicy(allow_exec=True),
        StreamInput(session=SESSION, stdin=text, encoding=encoding),
        StreamInput(session=SESSION, eof=True),
    )
    assert "".join(c.data for f in sent for c in f.chunks) == "ok\ufffd\n"
    # as an older client decodes it: no `encoding`, no `input_ack`
    for frame in sent:
        body = json.loads(encode(frame))
        assert "input_ack" not in body
        assert all("encoding" not in chunk for chunk in body["chunks"])
