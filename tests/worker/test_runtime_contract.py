"""The Runtime contract (worker/runtime/base.py), run against MockRuntime and DockerRuntime
alike: what the worker relies on must hold for the stand-in as for the real engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.errors import RuntimeFailure
from shared.sessions import LogsParams
from tests.support.waiting import wait_for
from tests.worker.conftest import RuntimeKit
from worker.runtime.base import ContainerExit, ContainerStatus, Runtime

TIMEOUT = 30.0


class Exits:
    """What a watch reports, collected from its thread."""

    def __init__(self) -> None:
        self.seen: list[ContainerExit] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()

    def on_exit(self, stopped: ContainerExit) -> None:
        with self._lock:
            self.seen.append(stopped)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def of(self, task_id: str) -> list[ContainerExit]:
        with self._lock:
            return [e for e in self.seen if e.task_id == task_id]


@pytest.fixture
def exits(kit: RuntimeKit) -> Iterator[Exits]:
    exits = Exits()
    watch = kit.runtime.watch_exits(exits.on_exit, exits.on_error)
    yield exits
    watch.close()
    assert exits.errors == []


def test_it_is_a_runtime_that_answers_pings(kit: RuntimeKit) -> None:
    # given the runtime, then it type-checks as the worker's Runtime and answers
    checked: Runtime = kit.runtime
    assert checked.ping() is True


def test_it_holds_the_image_its_specs_run(kit: RuntimeKit) -> None:
    # the hint of `kube up` names an image this says the engine holds (kube/up.py)
    assert kit.runtime.has_image(kit.spec().image) is True
    if kit.kind == "docker":  # the mock runs any image
        assert kit.runtime.has_image("localhost/kube-test-no-such-image:0") is False


def test_a_started_container_runs_and_is_listed(kit: RuntimeKit) -> None:
    # given a task publishing one port, when it starts
    info = kit.runtime.start("web", 2, kit.running(ports=(8080,)))

    # then it runs, with a host port for its port, and the list shows it just so
    assert (info.task_id, info.attempt, info.status) == ("web", 2, ContainerStatus.RUNNING)
    assert info.container_id and set(info.host_ports) == {"8080"}
    assert info.exit_code is None
    assert kit.runtime.list() == [info]


def test_start_is_idempotent_per_task_and_attempt(kit: RuntimeKit) -> None:
    # given a running attempt
    first = kit.runtime.start("idem", 1, kit.running())

    # when it starts again, from four callers at once, and a second attempt starts
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def race() -> None:
        barrier.wait()
        ids.append(kit.runtime.start("idem", 1, kit.running()).container_id)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    second = kit.runtime.start("idem", 2, kit.running())

    # then the first attempt still has its one container, and the second its own
    assert ids == [first.container_id] * 4
    assert second.container_id != first.container_id
    listed = {(i.attempt, i.container_id) for i in kit.runtime.list()}
    assert listed == {(1, first.container_id), (2, second.container_id)}


def test_an_exit_is_reported_with_its_code_and_listed(kit: RuntimeKit, exits: Exits) -> None:
    # given a container that exits with code 3, when it ends
    info = kit.runtime.start("three", 4, kit.exiting(3))
    [stopped] = wait_for(lambda: exits.of("three"), "the exit of task three", TIMEOUT)

    # then the watch reports that attempt's container and code, and the list agrees
    assert stopped == ContainerExit("three", 4, info.container_id, 3)
    [listed] = kit.runtime.list()
    assert (listed.status, listed.exit_code) == (ContainerStatus.EXITED, 3)


def test_a_finished_attempt_started_again_is_reported_not_run_again(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given an attempt that ran to its end
    first = kit.runtime.start("once", 1, kit.exiting(0))
    wait_for(lambda: exits.of("once"), "the attempt to end", TIMEOUT)

    # when its dispatch is delivered again
    again = kit.runtime.start("once", 1, kit.exiting(0))

    # then the same container is reported as it ended, and it did not run again
    assert again.container_id == first.container_id
    assert (again.status, again.exit_code) == (ContainerStatus.EXITED, 0)
    assert len(exits.of("once")) == 1


def test_remove_stops_reports_the_exit_and_forgets(kit: RuntimeKit, exits: Exits) -> None:
    # given a running container
    info = kit.runtime.start("svc", 1, kit.running())

    # when it is removed twice, and an attempt that never started is removed
    kit.runtime.remove("svc", 1, timeout=5)
    kit.runtime.remove("svc", 1, timeout=5)
    kit.runtime.remove("never-started", 7)

    # then it reported one exit (stopped by SIGTERM), and nothing of it is left
    wait_for(lambda: exits.of("svc"), "the exit of the removed container", TIMEOUT)
    assert exits.of("svc") == [ContainerExit("svc", 1, info.container_id, 143)]
    assert kit.runtime.list() == []
    with pytest.raises(RuntimeFailure, match="no container"):
        kit.runtime.logs("svc", 1)


def test_stop_reports_the_exit_and_keeps_the_container_to_read_until_removed(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given a running container
    info = kit.runtime.start("svc", 1, kit.running())
    # when it is stopped twice
    kit.runtime.stop("svc", 1, timeout=5)
    kit.runtime.stop("svc", 1, timeout=5)
    kit.runtime.stop("never-started", 7)
    # then it reported one exit, and is still there, ended, its output readable
    wait_for(lambda: exits.of("svc"), "the exit of the stopped container", TIMEOUT)
    (listed,) = kit.runtime.list("svc")
    assert listed.status == ContainerStatus.EXITED
    kit.runtime.output_end("svc", 1, 10)
    # and once removed, nothing of it is left, and no second exit is reported
    kit.runtime.remove("svc", 1, timeout=5)
    assert kit.runtime.list("svc") == []
    assert exits.of("svc") == [ContainerExit("svc", 1, info.container_id, 143)]


def test_removing_a_finished_container_reports_no_second_exit(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given a container that exited, and a sentinel
    kit.runtime.start("done", 1, kit.exiting(0))
    wait_for(lambda: exits.of("done"), "the exit of task done", TIMEOUT)

    # when the finished one is removed, and the sentinel after it
    kit.runtime.remove("done", 1)
    kit.runtime.start("sentinel", 1, kit.running())
    kit.runtime.remove("sentinel", 1, timeout=5)

    # then by the sentinel's exit, the finished one reported nothing more
    wait_for(lambda: exits.of("sentinel"), "the exit of the sentinel", TIMEOUT)
    assert len(exits.of("done")) == 1
    assert kit.runtime.list() == []


def test_the_list_holds_the_nodes_containers_running_or_ended(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given a running and an exited container of this node
    running = kit.runtime.start("runs", 1, kit.running())
    kit.runtime.start("ends", 1, kit.exiting(5))
    wait_for(lambda: exits.of("ends"), "task ends to exit", TIMEOUT)

    # when the node lists its containers
    infos = {info.task_id: info for info in kit.runtime.list()}

    # then it sees both, as they are
    assert set(infos) == {"runs", "ends"}
    assert infos["runs"] == running
    assert (infos["ends"].status, infos["ends"].exit_code) == (ContainerStatus.EXITED, 5)


def test_logs_hold_the_output_and_tail_keeps_the_last_lines(kit: RuntimeKit, exits: Exits) -> None:
    # given a container that printed three lines and exited
    kit.runtime.start("echo", 1, kit.printing("one\ntwo\nthree\n"))
    wait_for(lambda: exits.of("echo"), "the echo task to exit", TIMEOUT)

    # when its logs are read whole, tailed, and cut to a byte limit
    # then each read returns the end of the same output
    assert kit.runtime.logs("echo", 1) == b"one\ntwo\nthree\n"
    assert kit.runtime.logs("echo", 1, tail=2) == b"two\nthree\n"
    assert kit.runtime.logs("echo", 1, tail=0) == b""
    assert kit.runtime.logs("echo", 1, limit=6) == b"three\n"


def test_the_end_of_an_ended_containers_output_is_read_by_stream(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given a container that printed three lines and exited
    kit.runtime.start("echo", 1, kit.printing("one\ntwo\nthree\n"))
    wait_for(lambda: exits.of("echo"), "the echo task to exit", TIMEOUT)
    # when the end of its output is read, for the manager to keep
    stdout, stderr = kit.runtime.output_end("echo", 1, 10)
    # then it is the end of its stdout (it wrote nothing to stderr), cut to the limit
    assert (stdout, stderr) == (b"two\nthree\n", b"")
    with pytest.raises(RuntimeFailure, match="no container"):
        kit.runtime.output_end("ghost", 1, 10)


def test_logs_of_an_unknown_attempt_are_a_runtime_failure(kit: RuntimeKit) -> None:
    # given an attempt that never started, when its logs are read, then it fails clearly
    with pytest.raises(RuntimeFailure, match="no container"):
        kit.runtime.logs("ghost", 1)


def test_exec_returns_the_commands_exit_code_while_it_runs(kit: RuntimeKit) -> None:
    # given a running container whose checks pass (the mock answers 0 unless told)
    kit.runtime.start("exec", 1, kit.running())

    # then exec runs in it and reports success
    assert kit.runtime.exec("exec", 1, ("true",)) == 0


OLD_CLUSTER, NEW_CLUSTER = "aaaa0000aaaa0000", "bbbb0000bbbb0000"


def test_another_clusters_running_containers_are_strays_to_adopt_or_remove(
    kit: RuntimeKit,
) -> None:
    # given a container started in one cluster, and the runtime now in another
    kit.runtime.join(OLD_CLUSTER)
    kit.runtime.start("old", 1, kit.running(labels={"team": "a"}))
    older = kit.runtime.start("older", 1, kit.running())
    kit.runtime.join(NEW_CLUSTER)
    kit.runtime.start("new", 1, kit.running())
    # then the old cluster's are strays, described with their spec
    found, total = kit.runtime.strays(set(), limit=10)
    assert total == 2 and sorted(s.task_id for s in found) == ["old", "older"]
    old = next(s for s in found if s.task_id == "old")
    assert old.cluster == OLD_CLUSTER and old.name.endswith("old.1")
    assert old.spec is not None and old.spec.labels == {"team": "a"}
    assert old.spec.command == kit.running().command
    # and so are this cluster's attempts disowned; a limit describes fewer, counting all
    described, total = kit.runtime.strays({("new", 1)}, limit=1)
    assert (len(described), total) == (1, 3)
    # when one is adopted, it is this cluster's: listed, and no stray
    kit.runtime.adopt(old.container_id)
    assert "old" in [i.task_id for i in kit.runtime.list()]
    assert kit.runtime.strays(set(), limit=10)[1] == 1
    # and a stray removed is gone; one that is no stray is refused
    kit.runtime.remove_stray(older.container_id, set())
    assert kit.runtime.strays(set(), limit=10)[1] == 0
    with pytest.raises(RuntimeFailure):
        kit.runtime.remove_stray(old.container_id, set())


def test_following_logs_gives_each_line_with_its_time_and_ends_with_the_container(
    kit: RuntimeKit, exits: Exits
) -> None:
    # given a container that printed three lines and exited
    kit.runtime.start("lines", 1, kit.printing("one\ntwo\nthree\n"))
    wait_for(lambda: exits.of("lines"), "the lines task to exit", TIMEOUT)

    # when its output is followed (it ended: the follow ends too), and read once tailed
    followed = list(kit.runtime.follow_logs("lines", 1, LogsParams(follow=True)))
    tailed = list(kit.runtime.follow_logs("lines", 1, LogsParams(follow=False, tail=1)))

    # then each line comes alone, on stdout, with the time it was logged
    assert [line.data for line in followed] == [b"one\n", b"two\n", b"three\n"]
    assert {line.fd for line in followed} == {1}
    assert all(line.at is not None for line in followed)
    assert [line.data for line in tailed] == [b"three\n"]


def test_a_follow_of_a_running_container_ends_at_once_when_closed(kit: RuntimeKit) -> None:
    # given a follow of a container that runs and prints nothing more
    kit.runtime.start("quiet", 1, kit.running())
    follow = kit.runtime.follow_logs("quiet", 1, LogsParams(follow=True))
    read: list[object] = []
    reader = threading.Thread(target=lambda: read.extend(follow), daemon=True)
    reader.start()

    # when it is closed from another thread, then its reader returns
    follow.close()
    reader.join(timeout=5)
    assert not reader.is_alive()


def test_following_an_unknown_attempt_is_a_runtime_failure(kit: RuntimeKit) -> None:
    with pytest.raises(RuntimeFailure, match="no container"):
        kit.runtime.follow_logs("ghost", 1, LogsParams())


def test_a_volume_is_made_at_start_kept_and_removed_only_once_unused(kit: RuntimeKit) -> None:
    # given a task that writes to a named volume
    volumes = ({"name": "keep", "target": "/data"},)
    first = kit.running(volumes=volumes)
    kit.runtime.start("vol", 1, first)
    # then the node lists the volume, and refuses to remove it while a container runs on it
    assert kit.runtime.volumes() == ["keep"]
    with pytest.raises(RuntimeFailure, match="in use"):
        kit.runtime.remove_volume("keep")
    # when the container is removed, the volume stays; then it is removed, once
    kit.runtime.remove("vol", 1, timeout=1)
    assert kit.runtime.volumes() == ["keep"]
    assert kit.runtime.remove_volume("keep") is True
    assert kit.runtime.volumes() == []
    assert kit.runtime.remove_volume("keep") is False
