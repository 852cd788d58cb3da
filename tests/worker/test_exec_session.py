"""Exec sessions (`kube exec`) on each runtime: input, output, exit code, terminal, kill.

The mock's command echoes its input as `cat` does; on Docker the command is `cat` in a
busybox container. What only Docker has (an exit code of a real command, stderr told
apart, a killed process tree) is tested on Docker alone.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from shared.errors import RuntimeFailure
from tests.support.waiting import wait_for
from tests.worker.conftest import RuntimeKit
from worker.runtime.base import ExecOptions, ExecSession, OutputFd, container_name
from worker.runtime.mock import EXEC_EXIT_CODE_ENV


class Reader:
    """Reads a session's output on a thread of its own, as the worker does."""

    def __init__(self, session: ExecSession) -> None:
        self.chunks: list[tuple[OutputFd, bytes]] = []
        self.ended = threading.Event()
        self._session = session
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while (chunk := self._session.read()) is not None:
            self.chunks.append(chunk)
        self.ended.set()

    def output(self, fd: OutputFd = OutputFd.STDOUT) -> bytes:
        return b"".join(data for f, data in self.chunks if f is fd)


def started(kit: RuntimeKit, **env: str) -> str:
    task_id = f"x-{uuid.uuid4().hex[:8]}"
    kit.runtime.start(task_id, 1, kit.running(env=env))
    return task_id


def cat(kit: RuntimeKit, tty: bool = False) -> ExecOptions:
    return ExecOptions(command=("cat",), stdin=True, tty=tty, rows=30, cols=100)


def test_input_comes_back_and_its_end_ends_the_command(kit: RuntimeKit) -> None:
    task_id = started(kit)
    session = kit.runtime.open_exec(task_id, 1, cat(kit))
    try:
        reader = Reader(session)
        session.write(b"hello\n")
        wait_for(lambda: reader.output() == b"hello\n", what="the echo")
        session.close_input()
        assert reader.ended.wait(10)
        wait_for(lambda: session.exit_code() is not None, what="the exit")
        assert session.exit_code() == 0
    finally:
        session.close()


def test_a_terminal_echoes_each_keystroke_and_takes_a_size(kit: RuntimeKit) -> None:
    task_id = started(kit)
    session = kit.runtime.open_exec(task_id, 1, cat(kit, tty=True))
    try:
        reader = Reader(session)
        session.write(b"a")
        wait_for(lambda: b"a" in reader.output(), what="the echo of one keystroke")
        session.resize(40, 120)  # no error, whatever the runtime
    finally:
        session.close()
    assert reader.ended.wait(10)


def test_close_kills_a_command_still_running(kit: RuntimeKit) -> None:
    task_id = started(kit)
    # it reads no input, so only a kill ends it
    options = ExecOptions(command=("sleep", "1234"), stdin=True)
    session = kit.runtime.open_exec(task_id, 1, options)
    reader = Reader(session)
    session.close()
    assert reader.ended.wait(10)
    wait_for(lambda: session.exit_code() is not None, what="an exit code after the kill")
    assert session.exit_code() == 137  # 128 + SIGKILL
    session.close()  # twice is fine


def test_a_signal_reaches_the_command(kit: RuntimeKit) -> None:
    task_id = started(kit)
    session = kit.runtime.open_exec(task_id, 1, ExecOptions(command=("sleep", "1234"), stdin=True))
    try:
        reader = Reader(session)
        session.signal("TERM")
        assert reader.ended.wait(10)
        wait_for(lambda: session.exit_code() is not None, what="the exit code")
        assert session.exit_code() == 143  # 128 + SIGTERM
    finally:
        session.close()


def test_no_running_container_is_refused(kit: RuntimeKit) -> None:
    with pytest.raises(RuntimeFailure, match=container_name(kit.node, "nope", 1)):
        kit.runtime.open_exec("nope", 1, ExecOptions(command=("true",)))


def test_the_mock_exit_code_comes_from_the_spec(kit: RuntimeKit) -> None:
    if kit.kind != "mock":
        pytest.skip("the mock's own knob")
    task_id = started(kit, **{EXEC_EXIT_CODE_ENV: "3"})
    session = kit.runtime.open_exec(task_id, 1, ExecOptions(command=("x",)))
    assert session.read() is None
    assert session.exit_code() == 3


@pytest.mark.docker
def test_docker_tells_stderr_apart_and_keeps_the_exit_code(
    make_docker_runtime: Any, busybox_image: str
) -> None:
    runtime = make_docker_runtime()
    kit = RuntimeKit("docker", runtime, runtime.node)
    task_id = started(kit)
    options = ExecOptions(command=("sh", "-c", "echo out; echo err >&2; exit 7"))
    session = runtime.open_exec(task_id, 1, options)
    try:
        reader = Reader(session)
        assert reader.ended.wait(10)
        assert reader.output(OutputFd.STDOUT) == b"out\n"
        assert reader.output(OutputFd.STDERR) == b"err\n"
        wait_for(lambda: session.exit_code() is not None, what="the exit code")
        assert session.exit_code() == 7
    finally:
        session.close()


@pytest.mark.docker
def test_docker_close_leaves_no_process_of_the_exec(
    make_docker_runtime: Any, busybox_image: str, docker_client: Any
) -> None:
    runtime = make_docker_runtime()
    kit = RuntimeKit("docker", runtime, runtime.node)
    task_id = started(kit)
    # a shell that started a child of its own: both must go
    options = ExecOptions(command=("sh", "-c", "sleep 1234 & sleep 4321"), tty=True, stdin=True)
    session = runtime.open_exec(task_id, 1, options)
    container = docker_client.containers.get(container_name(runtime.node, task_id, 1))

    def sleeps() -> list[str]:
        mine = ("sleep 1234", "sleep 4321")
        return [" ".join(p) for p in container.top()["Processes"] if " ".join(p).endswith(mine)]

    wait_for(lambda: len(sleeps()) == 2, what="the exec's two processes")
    session.close()
    wait_for(lambda: not sleeps(), what="no process of the exec left", timeout=10)
    exec_ids = docker_client.api.inspect_container(container.id)["ExecIDs"] or []
    running = [e for e in exec_ids if docker_client.api.exec_inspect(e)["Running"]]
    assert running == []


@pytest.mark.docker
def test_docker_keeps_the_first_output_read_with_the_engines_answer(
    make_docker_runtime: Any, busybox_image: str
) -> None:
    # a shell's prompt comes at once, often in the same read as the engine's HTTP answer
    runtime = make_docker_runtime()
    task_id = started(RuntimeKit("docker", runtime, runtime.node))
    for tty in (True, False, True, False):
        options = ExecOptions(command=("echo", "first"), tty=tty, stdin=True)
        session = runtime.open_exec(task_id, 1, options)
        try:
            reader = Reader(session)
            assert reader.ended.wait(10)
            assert reader.output().replace(b"\r", b"") == b"first\n"
        finally:
            session.close()
