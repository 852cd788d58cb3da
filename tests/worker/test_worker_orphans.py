"""The worker's side of orphans (issue 14): a container the manager disowns is left
running and listed as an orphan, another cluster's too; a person's remove or adopt is
carried out; a task's spec is read back from a Docker container for adoption."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.bus import StubBus
from shared.codec import encode
from shared.messages import (
    MAX_ORPHAN_BYTES,
    AdoptOrphan,
    ClusterInfo,
    Disowned,
    Held,
    RemoveOrphan,
    RunTask,
    StopTask,
)
from shared.models import TaskSpec
from tests.support.dispatches import delivery, sent
from tests.support.waiting import wait_for
from tests.worker.conftest import reported, stub_worker
from worker.runtime.base import Stray
from worker.runtime.mock import MockRuntime
from worker.runtime.recovery import recovered_spec, task_name
from worker.service import Worker, orphan_list

OLD, NEW = "aaaa0000aaaa0000", "bbbb0000bbbb0000"


@pytest.fixture
def worker() -> Iterator[tuple[Worker, StubBus, MockRuntime]]:
    runtime = MockRuntime("n1")
    worker, bus = stub_worker(runtime)
    yield worker, bus, runtime
    worker.close()


def run(worker: Worker, bus: StubBus, tag: int, task_id: str, cluster: str) -> None:
    spec = TaskSpec(name="t", image="b", command=("sleep", "60"), ports=(80,))
    body = encode(RunTask(task_id=task_id, attempt=1, spec=spec, cluster=cluster))
    updates = len(sent(bus, "update"))
    worker.on_dispatch(delivery(tag, body))
    reported(worker, bus, updates + 1)


def beat(worker: Worker, bus: StubBus) -> dict[str, Any]:
    """The worker's next heartbeat, its pending callbacks run first."""
    bus.run_callbacks()
    worker.send_heartbeat()
    worker.flush()
    return sent(bus, "heartbeat")[-1]


def listed(worker: Worker, bus: StubBus) -> list[str]:
    return [o["task_id"] for o in beat(worker, bus)["orphans"]]


def held(worker: Worker, bus: StubBus) -> list[str]:
    return [t["task_id"] for t in beat(worker, bus)["tasks"]]


def test_a_disowned_container_is_left_running_and_listed_as_an_orphan(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given a worker running t1 and t2 in its cluster
    w, bus, runtime = worker
    run(w, bus, 1, "t1", OLD)
    run(w, bus, 2, "t2", OLD)
    assert sorted(held(w, bus)) == ["t1", "t2"]
    # when the manager says it never placed t1
    w.on_dispatch(delivery(3, encode(Disowned(tasks=(Held(task_id="t1", attempt=1),)))))
    # then t1 runs on, no longer held but listed as an orphan, with its spec
    wait_for(lambda: listed(w, bus) == ["t1"], what="t1 listed as an orphan")
    assert held(w, bus) == ["t2"]
    assert [c.status.value for c in runtime.list("t1")] == ["running"]
    orphan = beat(w, bus)["orphans"][0]
    assert orphan["spec"]["command"] == ["sleep", "60"] and orphan["host_ports"]
    # and removing it, as a person asked, removes it
    w.on_dispatch(delivery(4, encode(RemoveOrphan(container_id=orphan["container_id"]))))
    wait_for(lambda: runtime.list("t1") == [], what="t1 removed")
    wait_for(lambda: listed(w, bus) == [], what="no orphans")
    assert held(w, bus) == ["t2"]


def test_another_clusters_containers_are_listed_and_an_adopted_one_is_held_again(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given a task of the old cluster, and the manager now in a new one (store deleted)
    w, bus, runtime = worker
    run(w, bus, 1, "t1", OLD)
    w.on_dispatch(delivery(2, encode(ClusterInfo(cluster=NEW))))
    # then it runs on, listed as an orphan of the old cluster
    wait_for(lambda: listed(w, bus) == ["t1"], what="t1 an orphan")
    assert beat(w, bus)["orphans"][0]["cluster"] == OLD and held(w, bus) == []
    # when the manager adopts it
    container = beat(w, bus)["orphans"][0]["container_id"]
    adopt = AdoptOrphan(task_id="t1", attempt=1, container_id=container)
    w.on_dispatch(delivery(3, encode(adopt)))
    # then the worker holds it again, reports it running, and lists no orphan
    wait_for(lambda: held(w, bus) == ["t1"], what="t1 held again")
    assert listed(w, bus) == []
    assert sent(bus, "update")[-1]["state"] == "running"
    assert [c.container_id for c in runtime.list("t1")] == [container]


def dispatch_run(worker: Worker, bus: StubBus, tag: int, task_id: str, attempt: int) -> str:
    """A RunTask of another spec for `task_id` at `attempt`; the state it was answered."""
    spec = TaskSpec(name="evil", image="b", command=("sh", "-c", "exit 1"), env={"EVIL": "1"})
    body = encode(RunTask(task_id=task_id, attempt=attempt, spec=spec, cluster=OLD))
    updates = len(sent(bus, "update"))
    worker.on_dispatch(delivery(tag, body))
    return str(reported(worker, bus, updates + 1)[-1]["state"])


def test_a_run_of_an_orphans_task_id_neither_takes_it_over_nor_removes_it(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given t1 at attempt 1, disowned by the manager: an orphan
    w, bus, runtime = worker
    run(w, bus, 1, "t1", OLD)
    container = runtime.list("t1")[0].container_id
    w.on_dispatch(delivery(2, encode(Disowned(tasks=(Held(task_id="t1", attempt=1),)))))
    wait_for(lambda: listed(w, bus) == ["t1"], what="t1 an orphan")
    # when a client submits its task id again, at the same attempt (an implicit take-over)
    # then the attempt fails, naming the orphan, and the orphan's spec is not replaced
    assert dispatch_run(w, bus, 3, "t1", 1) == "failed"
    assert "as an orphan" in sent(bus, "update")[-1]["error"]
    # and the manager's stop of that failed attempt (the orphan's name) leaves it running
    w.on_dispatch(delivery(4, encode(StopTask(task_id="t1", attempt=1))))
    bus.run_callbacks()
    # and when the next attempt lands here (which removes older attempts first)
    assert dispatch_run(w, bus, 5, "t1", 2) == "failed"
    # then the orphan still runs, the only container of t1, still listed and not held
    assert [(c.container_id, c.status.value) for c in runtime.list("t1")] == [
        (container, "running")
    ]
    assert listed(w, bus) == ["t1"] and "t1" not in held(w, bus)
    w.close()  # waits for the stop's removal job
    assert [c.container_id for c in runtime.list("t1")] == [container]


def test_an_attempt_whose_orphan_is_gone_runs_and_is_reported(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given t1 disowned, and then removed as a person asked
    w, bus, runtime = worker
    run(w, bus, 1, "t1", OLD)
    w.on_dispatch(delivery(2, encode(Disowned(tasks=(Held(task_id="t1", attempt=1),)))))
    wait_for(lambda: listed(w, bus) == ["t1"], what="t1 an orphan")
    container = runtime.list("t1")[0].container_id
    w.on_dispatch(delivery(3, encode(RemoveOrphan(container_id=container))))
    wait_for(lambda: runtime.list("t1") == [], what="t1 removed")
    # when the task id is run again at that attempt
    # then it starts, and is held and reported like any task
    assert dispatch_run(w, bus, 4, "t1", 1) == "running"
    wait_for(lambda: held(w, bus) == ["t1"], what="t1 held")


def test_an_orphan_that_is_no_orphan_is_not_removed(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    w, bus, runtime = worker
    run(w, bus, 1, "t1", OLD)
    container = runtime.list("t1")[0].container_id
    w.on_dispatch(delivery(2, encode(RemoveOrphan(container_id=container))))
    bus.run_callbacks()
    w.close()  # waits for the removal job
    assert [c.status.value for c in runtime.list("t1")] == ["running"]


def stray(task_id: str, command_bytes: int = 0) -> Stray:
    spec = TaskSpec(name="t", image="b", command=("x" * command_bytes,) if command_bytes else ())
    return Stray(task_id, 1, f"{task_id}-c", f"kube.n1.{task_id}.1", "b", OLD, None, {}, spec)


def test_the_orphans_a_heartbeat_lists_are_bounded_in_bytes() -> None:
    many = [stray(f"t{i}", command_bytes=20_000) for i in range(40)]
    listed = orphan_list(many)
    assert 0 < len(listed) < 40
    assert sum(len(encode(o)) for o in listed) <= MAX_ORPHAN_BYTES


# -- a spec read back from an inspected container --------------------------------------------


def inspected(**host: Any) -> dict[str, Any]:
    return {
        "Config": {
            "Image": "localhost/web:1",
            "Cmd": ["serve", "--port", "80"],
            "Env": ["PATH=/usr/bin", "MODE=prod"],
            "Labels": {
                "kube.task-id": "web-1a2b3c4d",
                "kube.attempt": "2",
                "kube.node": "n1",
                "kube.cluster": OLD,
                "kube.stop-after-seconds": "30.0",
                "team": "a",
            },
        },
        "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": None},
            "NanoCpus": 500_000_000,
            "Memory": 64 * 1024**2,
            **host,
        },
    }


def test_a_plain_containers_spec_is_read_back() -> None:
    spec = recovered_spec(inspected(), image_env=["PATH=/usr/bin"])
    assert isinstance(spec, TaskSpec), spec
    assert (spec.name, spec.image, spec.command) == (
        "web",
        "localhost/web:1",
        ("serve", "--port", "80"),
    )
    assert spec.env == {"MODE": "prod"}  # the image's own PATH left out
    assert [(p.container, p.host) for p in spec.published()] == [(80, 8080)]
    assert (spec.cpu, spec.memory) == (0.5, 64 * 1024**2)
    assert spec.labels == {"team": "a"}
    assert spec.on_disconnect is not None and spec.on_disconnect.stop_after_seconds == 30.0


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ({"Binds": ["/etc:/etc"]}, "host mounts"),
        ({"Privileged": True}, "privileged mode"),
        ({"NetworkMode": "host"}, "the host's network"),
        ({"CapAdd": ["NET_ADMIN"]}, "added capabilities"),
    ],
)
def test_a_container_that_asks_more_of_its_host_is_not_adopted(
    host: dict[str, Any], said: str
) -> None:
    refused = recovered_spec(inspected(**host), image_env=[])
    assert isinstance(refused, str) and said in refused


def test_a_task_name_comes_from_its_id() -> None:
    assert task_name("web-1a2b3c4d") == "web"
    assert task_name("my-web-1a2b3c4d") == "my-web"
    assert task_name("plain") == "plain"
