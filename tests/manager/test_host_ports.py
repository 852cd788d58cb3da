"""A fixed host port is a resource: two tasks that want it never share a node."""

from __future__ import annotations

from datetime import datetime, timedelta

from manager import core, nodes, restarts
from manager.blocked import Blocked
from manager.effects import Decision
from manager.holdings import Leftovers
from manager.scheduler import RoundRobin
from manager.store import Store
from shared.codec import encode
from shared.messages import Heartbeat, HeldTask
from shared.models import NodeStatus, TaskRecord, TaskSpec
from shared.placement import Dimension, NodeMiss, NoFitKind
from shared.states import TaskState
from tests.support.manager import GI, NOW, manager_with_a_node, result
from tests.support.manager import ready_node as node


def pending(task_id: str, *ports: object) -> TaskRecord:
    spec = TaskSpec.model_validate({"name": task_id, "image": "busybox", "ports": list(ports)})
    return core.accept(spec, task_id, NOW).tasks[0]


def wants(port: int, container: int = 80) -> dict[str, int]:
    return {"container": container, "host": port}


def test_the_second_task_for_a_host_port_stays_pending_saying_where_it_is_taken() -> None:
    # given one node and two tasks that want host port 8080
    first, second = pending("a", wants(8080)), pending("b", wants(8080, container=81))

    # when they are scheduled in one pass
    decision = core.schedule([first, second], [node("n1")], RoundRobin(), NOW)

    # then the first is placed and the second stays pending, the port as data and in words
    by_id = {task.id: task for task in decision.tasks}
    assert by_id["a"].state == TaskState.SCHEDULED and by_id["a"].node == "n1"
    left = by_id["b"]
    assert left.state == TaskState.PENDING and left.unplaced is not None
    assert left.unplaced.kind is NoFitKind.HOST_PORTS
    assert left.unplaced.dimension_exhausted == {Dimension.HOST_PORTS: 1}
    assert left.unplaced.nodes == (
        NodeMiss(
            node="n1",
            exhausted=(Dimension.HOST_PORTS,),
            free_cpu=4.0,
            free_memory=4 * GI,
            free_disk=100 * GI,
            tasks=1,
            ports=(8080,),
        ),
    )
    assert left.error == "no node can take host port 8080: n1 has host port 8080 taken"


def test_tasks_for_one_host_port_go_to_different_nodes() -> None:
    tasks = [pending(f"t{i}", wants(9000)) for i in range(3)]
    decision = core.schedule(tasks, [node("n1"), node("n2")], RoundRobin(), NOW)
    placed = [t.node for t in decision.tasks if t.state == TaskState.SCHEDULED]
    assert sorted(placed) == ["n1", "n2"]  # never two on one node; the third waits
    waiting = [t for t in decision.tasks if t.state == TaskState.PENDING]
    assert [t.id for t in waiting] == ["t2"]
    assert waiting[0].error == (
        "no node can take host port 9000: n1 has host port 9000 taken, n2 has host port 9000 taken"
    )


def test_other_ports_and_engine_picked_ports_share_a_node() -> None:
    tasks = [pending("a", wants(8080)), pending("b", wants(8081)), pending("c", 80), pending("d")]
    decision = core.schedule(tasks, [node("n1")], RoundRobin(), NOW)
    assert [t.node for t in decision.tasks] == ["n1"] * 4


def test_a_short_node_says_both_what_it_lacks_and_which_port_is_taken() -> None:
    spec = TaskSpec.model_validate({"name": "big", "image": "b", "cpu": 8, "ports": [wants(8080)]})
    full = node("n1", reserved_ports=(8080,))
    decision = core.schedule([core.accept(spec, "big", NOW).tasks[0]], [full], RoundRobin(), NOW)
    assert decision.tasks[0].error == (
        "no node can take 8 cpus, host port 8080: n1 has 4 cpus free and host port 8080 taken"
    )


def test_the_store_counts_scheduled_tasks_ports_until_they_end(store_url: str) -> None:
    # given a task on n1 holding host port 8080, scheduled but not yet running
    store = Store(store_url)
    store.record(Decision(nodes=[node("n1")]))
    first = pending("a", wants(8080), 81)
    store.record(core.schedule([first], store.nodes(), RoundRobin(), NOW))
    assert store.node("n1").reserved_ports == (8080,)  # type: ignore[union-attr]

    # then a second task for the port finds it taken, also after a restart of the store
    store.close()
    store = Store(store_url)
    assert store.node("n1").reserved_ports == (8080,)  # type: ignore[union-attr]
    second = pending("b", wants(8080))
    assert core.schedule([second], store.nodes(), RoundRobin(), NOW).tasks[0].state == (
        TaskState.PENDING
    )

    # and once the first has ended, the port is free again
    placed = store.task("a")
    assert placed is not None
    store.record(core.request_stop(placed.model_copy(update={"state": TaskState.PENDING}), NOW))
    assert store.node("n1").reserved_ports == ()  # type: ignore[union-attr]
    assert core.schedule([second], store.nodes(), RoundRobin(), NOW).tasks[-1].node == "n1"
    store.close()


def test_a_task_blocked_on_a_port_wakes_when_the_port_is_freed() -> None:
    # given a task blocked because n1 holds its port
    taken = node("n1", reserved_ports=(8080,))
    waiting = pending("b", wants(8080))
    index = Blocked()
    index.rebuild([waiting], [taken])
    assert index.due(NOW) == ["b"]
    index.settle([waiting], Decision(), NOW)
    assert index.is_blocked("b")

    # when n1 is seen with another port taken instead, it is still blocked: not better
    index.observe(taken.model_copy(update={"reserved_ports": (8080, 9090)}))
    assert index.is_blocked("b")

    # when the port is freed, it is due again
    index.observe(taken.model_copy(update={"reserved_ports": (9090,)}))
    assert index.due(NOW) == ["b"]


def test_nodes_that_advertise_one_address_share_its_host_ports() -> None:
    # given two workers on one engine, both advertising 127.0.0.1, and two replicas of 8080
    same = [node("n1", address="127.0.0.1"), node("n2", address="127.0.0.1")]
    tasks = [pending("a", wants(8080)), pending("b", wants(8080))]

    # when they are scheduled in one pass, one is placed and the other waits with the reason
    decision = core.schedule(tasks, same, RoundRobin(), NOW)
    by_id = {task.id: task for task in decision.tasks}
    assert by_id["a"].state == TaskState.SCHEDULED
    assert by_id["b"].state == TaskState.PENDING
    assert by_id["b"].error == (
        "no node can take host port 8080: n1 has host port 8080 taken, n2 has host port 8080 taken"
    )

    # and nodes with other addresses, or none, each have their own
    apart = [node("n1", address="10.0.0.1"), node("n2", address="10.0.0.2"), node("n3")]
    three = [pending(f"t{i}", wants(8080)) for i in range(3)]
    placed = core.schedule(three, apart, RoundRobin(), NOW).tasks
    assert sorted(t.node or "" for t in placed) == ["n1", "n2", "n3"]


def test_the_store_shares_a_placed_tasks_port_with_nodes_at_its_address(store_url: str) -> None:
    store = Store(store_url)
    store.record(
        Decision(
            nodes=[node("n1", address="127.0.0.1"), node("n2", address="127.0.0.1"), node("n3")]
        )
    )
    first = pending("a", wants(8080))
    store.record(core.schedule([first], [store.node("n1")], RoundRobin(), NOW))  # type: ignore[list-item]
    ports = {n.name: n.reserved_ports for n in store.nodes()}
    assert ports == {"n1": (8080,), "n2": (8080,), "n3": ()}
    # a node that moves to another address leaves the shared port space
    store.record(Decision(nodes=[node("n2", address="10.0.0.2")]))
    assert store.node("n2").reserved_ports == ()  # type: ignore[union-attr]
    store.close()


def test_a_running_tasks_engine_picked_host_port_is_held_on_its_node(store_url: str) -> None:
    # given a task running on n1 whose container port 80 the engine published on 32778
    store = Store(store_url)
    store.record(Decision(nodes=[node("n1")]))
    picked = pending("a", 80)
    store.record(core.schedule([picked], store.nodes(), RoundRobin(), NOW))
    placed = store.task("a")
    assert placed is not None
    store.record(
        core.move(placed, TaskState.RUNNING, NOW, host_ports={"80": 32778})  # type: ignore[arg-type]
    )
    assert store.node("n1").reserved_ports == (32778,)  # type: ignore[union-attr]
    # then a task that asks for 32778 by number waits, also after a restart of the store
    store.close()
    store = Store(store_url)
    asking = pending("b", wants(32778))
    left = core.schedule([asking], store.nodes(), RoundRobin(), NOW).tasks[0]
    assert left.state == TaskState.PENDING
    assert left.error == "no node can take host port 32778: n1 has host port 32778 taken"
    store.close()


def test_leftover_ports_are_gathered_over_parts_and_freed_by_a_whole_heartbeat() -> None:
    leftovers = Leftovers()
    assert not leftovers.heard("n1", frozenset({8080}), first=True, whole=False)
    assert not leftovers.heard("n1", frozenset({9090}), first=False, whole=False)
    assert leftovers.held["n1"] == {8080, 9090}
    # a new heartbeat's first part frees nothing before its last part is in
    assert not leftovers.heard("n1", frozenset(), first=True, whole=False)
    assert leftovers.held["n1"] == {8080, 9090}
    assert leftovers.heard("n1", frozenset({9090}), first=False, whole=True)
    assert leftovers.held["n1"] == {9090}
    assert leftovers.heard("n1", frozenset(), first=True, whole=True)
    assert "n1" not in leftovers.held


def test_a_lost_attempts_container_holds_its_port_until_a_heartbeat_shows_it_gone(
    store_url: str,
) -> None:
    # given task a running on n1 with host port 18084, and n1 lost: attempt 2 waits
    manager, _ = manager_with_a_node(store_url)
    accepted = core.accept(
        TaskSpec.model_validate({"name": "a", "image": "b", "ports": [wants(18084)]}), "a", NOW
    )
    placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
    manager.commit(
        accepted.extend(placed).extend(core.move(placed.tasks[-1], TaskState.RUNNING, NOW))
    )
    n1 = manager.store.node("n1")
    assert n1 is not None
    task = manager.store.task("a")
    assert task is not None
    down = Decision(nodes=[n1.model_copy(update={"status": NodeStatus.DOWN})])
    manager.commit(down.extend(nodes.node_lost("n1", [task], NOW)))
    assert manager.store.task("a").state == TaskState.PENDING  # type: ignore[union-attr]

    # when n1 comes back, its heartbeat listing attempt 1's container, still being stopped
    def beat(*held: HeldTask, at: datetime = NOW) -> Heartbeat:
        return Heartbeat(
            node="n1", at=at, cpus=4, memory=1024**3, disk=1024**3, inventory=True, tasks=held
        )

    old = HeldTask(task_id="a", attempt=1, state=TaskState.RUNNING, container_id="c")
    manager.on_result(result(1, encode(beat(old))))

    # then attempt 2 is not placed beside it: the port is held, and the reason says so
    waiting = manager.store.task("a")
    assert waiting is not None and waiting.state == TaskState.PENDING
    assert waiting.error == "no node can take host port 18084: n1 has host port 18084 taken"

    # and once a heartbeat no longer lists it, attempt 2 is placed on n1
    manager.on_result(result(2, encode(beat(at=NOW + timedelta(seconds=1)))))
    again = manager.store.task("a")
    assert again is not None and again.state == TaskState.SCHEDULED
    assert (again.node, again.attempt) == ("n1", 2)
    manager.store.close()


def test_an_attempt_that_found_its_host_port_bound_waits_out_a_stop_grace() -> None:
    task = pending("a", wants(18084)).model_copy(
        update={"state": TaskState.RUNNING, "node": "n1", "attempt": 1}
    )
    bound = "Bind for 0.0.0.0:18084 failed: port is already allocated"
    step = restarts.after_attempt(task, TaskState.FAILED, bound)
    assert isinstance(step, restarts.Restart)
    assert step.counted and step.delay == restarts.PORT_CONFLICT_DELAY
    other = restarts.after_attempt(task, TaskState.FAILED, "exited with code 1")
    assert isinstance(other, restarts.Restart) and other.delay == 1.0  # the backoff
