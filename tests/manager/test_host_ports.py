"""A fixed host port is a resource: two tasks that want it never share a node."""

from __future__ import annotations

from manager import core
from manager.blocked import Blocked
from manager.effects import Decision
from manager.scheduler import RoundRobin
from manager.store import Store
from shared.models import TaskRecord, TaskSpec
from shared.placement import Dimension, NodeMiss, NoFitKind
from shared.states import TaskState
from tests.support.manager import GI, NOW
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
