"""MockRuntime: simulated containers in memory, no engine (what all runtimes share is in
test_runtime_contract.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.errors import RuntimeFailure
from shared.models import TaskSpec
from worker.runtime.base import ContainerExit, ContainerStatus
from worker.runtime.mock import FIRST_HOST_PORT, STOPPED_EXIT_CODE, MockRuntime

TIMEOUT = 5.0


def spec(**fields: object) -> TaskSpec:
    return TaskSpec(name="probe", image="busybox", **fields)  # type: ignore[arg-type]


class Exits:
    """Collects the exits a watch reports; wait() blocks until one arrives."""

    def __init__(self) -> None:
        self.seen: list[ContainerExit] = []
        self._arrived = threading.Condition()

    def on_exit(self, stopped: ContainerExit) -> None:
        with self._arrived:
            self.seen.append(stopped)
            self._arrived.notify_all()

    def on_error(self, error: Exception) -> None:
        raise AssertionError(f"the mock reported an error: {error!r}")

    def wait(self, count: int = 1) -> list[ContainerExit]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.seen) >= count, TIMEOUT)
            return list(self.seen)


@pytest.fixture
def runtime() -> MockRuntime:
    return MockRuntime("mock-node")


@pytest.fixture
def exits(runtime: MockRuntime) -> Iterator[Exits]:
    exits = Exits()
    watch = runtime.watch_exits(exits.on_exit, exits.on_error)
    yield exits
    watch.close()


def test_start_is_idempotent_per_attempt(runtime: MockRuntime) -> None:
    # given a started attempt publishing two ports
    first = runtime.start("web", 1, spec(ports=(8080, 9090)))

    # when it starts again, from many threads at once, and a second attempt starts
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def race() -> None:
        barrier.wait()
        ids.append(runtime.start("web", 1, spec(ports=(8080, 9090))).container_id)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    second = runtime.start("web", 2, spec(ports=(8080,)))

    # then the first attempt has one running container with fake host ports from 40000
    assert set(ids) == {first.container_id}
    assert first.status is ContainerStatus.RUNNING
    assert first.host_ports == {"8080": FIRST_HOST_PORT, "9090": FIRST_HOST_PORT + 1}
    assert second.container_id != first.container_id
    assert second.host_ports == {"8080": FIRST_HOST_PORT + 2}
    assert len(runtime.list()) == 2


def test_removed_before_its_time_never_exits_again(runtime: MockRuntime, exits: Exits) -> None:
    # given a container due to exit in 50 ms, removed at once, and a sentinel due later
    runtime.start("short", 1, spec(env={"MOCK_RUN_SECONDS": "0.05"}))
    runtime.remove("short", 1)
    runtime.start("sentinel", 1, spec(env={"MOCK_RUN_SECONDS": "0.2"}))

    # when the sentinel's exit arrives, well after the first one's time
    seen = exits.wait(2)

    # then the first container reported only its removal
    assert [(e.task_id, e.exit_code) for e in seen] == [
        ("short", STOPPED_EXIT_CODE),
        ("sentinel", 0),
    ]


def test_logs_name_the_image_and_command(runtime: MockRuntime) -> None:
    # given a started container
    runtime.start("echo", 1, spec(command=("echo", "hi")))

    # when its logs are read, whole and with tail 0
    # then they hold one line naming image and command
    assert runtime.logs("echo", 1) == b"mock: busybox echo hi\n"
    assert runtime.logs("echo", 1, tail=0) == b""


def test_a_bad_run_time_fails_the_start(runtime: MockRuntime) -> None:
    # given a spec whose MOCK_RUN_SECONDS is not a number, when it starts, then it fails
    with pytest.raises(RuntimeFailure, match="MOCK_RUN_SECONDS"):
        runtime.start("bad", 1, spec(env={"MOCK_RUN_SECONDS": "soon"}))
    assert runtime.list() == []


def test_a_fixed_host_port_is_published_there_and_held_until_removed(
    runtime: MockRuntime,
) -> None:
    # given a container on fixed host port 8080 beside one on a picked port
    first = runtime.start("web", 1, spec(ports=({"container": 80, "host": 8080}, 81)))
    assert first.host_ports == {"80": 8080, "81": FIRST_HOST_PORT}

    # when another asks for the same host port, it is refused as the engine refuses it
    with pytest.raises(RuntimeFailure, match="host port 8080 is already allocated"):
        runtime.start("other", 1, spec(ports=({"container": 80, "host": 8080},)))

    # then once the first is removed, the port is free again
    runtime.remove("web", 1)
    assert runtime.start("other", 1, spec(ports=({"container": 80, "host": 8080},))).host_ports == {
        "80": 8080
    }
