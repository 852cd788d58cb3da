"""Each delivery all or nothing: a handler that fails costs only its own message."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from manager import core, silence
from manager.effects import Decision
from manager.scheduler import RoundRobin
from manager.server import Manager
from shared import messages, topology
from shared.bus import Delivery, StubBus, dead_letter_copy
from shared.codec import encode
from shared.errors import ConnectionLost, MessagingError
from shared.messages import Heartbeat, HeldTask, TaskUpdate
from shared.models import MAX_BODY_BYTES, NodeStatus, TaskSpec
from shared.states import TaskState
from tests.support.manager import (
    NOW,
    advance,
    command,
    manager_with_a_node,
    read_probes_back,
    result,
    submit,
)

POISON = "poison"
"""The id of a submit whose handler fails after its first write (see `failing_after_write`)."""


def failing_after_write(manager: Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the manager's handler raise right after recording a decision about POISON: a
    handler bug that fails deterministically, after its first write."""
    real = manager.commit

    def commit(decision: Decision) -> None:
        real(decision)
        if any(task.id == POISON for task in decision.tasks):
            raise RuntimeError("a bug after the first write")

    monkeypatch.setattr(manager, "commit", commit)


def trace(bus: StubBus) -> list[tuple[str, object]]:
    """What the bus did, in order: ("publish", key), ("dead-letter", reason), ("refusal",
    error) for a reply that says no, and ("ack", tag)."""
    out: list[tuple[str, object]] = []
    for kind, item in bus.log:
        if kind == "ack":
            out.append(("ack", item.tag))
        elif item.exchange == topology.DEAD_LETTER:
            out.append(("dead-letter", item.headers[topology.REASON_HEADER]))
        elif item.routing_key == "reply" and not json.loads(item.body)["ok"]:
            out.append(("refusal", json.loads(item.body)["error"]))
        elif kind == "publish":
            out.append(("publish", item.routing_key))
    return out


def deliver(manager: Manager, delivery: Delivery) -> None:
    """Hand a delivery to the manager as its consumer of that queue does."""
    if delivery.queue == topology.COMMANDS_QUEUE:
        manager.handle(delivery, manager.commands.on_command)
    else:
        manager.handle(delivery, manager.on_result)


def running_task(manager: Manager, task_id: str) -> None:
    accepted = core.accept(TaskSpec(name=task_id, image="b", cpu=1), task_id, NOW)
    placed = core.schedule(accepted.tasks, manager.store.nodes(), RoundRobin(), NOW)
    manager.commit(
        accepted.extend(placed).extend(core.move(placed.tasks[-1], TaskState.RUNNING, NOW))
    )
    manager.store.commit()


def test_one_poison_message_costs_only_itself(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a manager with a node, whose handler fails after its first write for POISON
    manager, bus = manager_with_a_node(store_url)
    failing_after_write(manager, monkeypatch)
    # when 50 valid submits and one whose handler raises arrive in one batch
    for tag in range(1, 26):
        deliver(manager, submit(tag, f"t{tag}"))
    deliver(manager, submit(26, POISON))
    for tag in range(27, 52):
        deliver(manager, submit(tag, f"t{tag}"))
    manager.finish_batch()
    # then the 50 tasks are recorded, and the poison is not
    recorded = {task.id for task in manager.store.tasks()}
    assert recorded == {f"t{tag}" for tag in [*range(1, 26), *range(27, 52)]}
    # and the poison was dead-lettered once, with its reason
    dead = [reason for kind, reason in trace(bus) if kind == "dead-letter"]
    assert dead == ["the manager failed on this message: RuntimeError: a bug after the first write"]
    # and every delivery of the batch, the poison too, was acked after its publishes
    assert sorted(tag for kind, tag in trace(bus) if kind == "ack") == list(range(1, 52))
    manager.store.close()


def test_a_handler_that_fails_after_writing_leaves_no_trace(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a manager with t1 running on n1, holding one cpu there
    manager, bus = manager_with_a_node(store_url)
    running_task(manager, "t1")
    before_where = manager.store.where(["t1"])
    before_node = manager.store.node("n1")
    before_events = manager.store.events("t1")
    manager.finish_batch()
    bus.log.clear()
    # when t1's failure is reported and its handler raises after recording the restart
    failed = TaskUpdate(node="n1", task_id="t1", attempt=1, state=TaskState.FAILED, at=NOW)

    def broken(*_: object) -> None:
        raise RuntimeError("a bug after the first write")

    monkeypatch.setattr(manager, "after_change", broken)
    deliver(manager, result(1, encode(failed)))
    manager.finish_batch()
    # then the task, its history, the node's holdings and the attempts are as before
    task = manager.store.task("t1")
    assert task is not None and task.state == TaskState.RUNNING
    assert manager.store.events("t1") == before_events
    assert manager.store.where(["t1"]) == before_where
    assert manager.store.running_on("n1") == {"t1": 1}
    assert manager.store.node("n1") == before_node
    # and nothing it recorded went out: no restart event, no stop for the node
    published = [key for kind, key in trace(bus) if kind == "publish"]
    assert "task.pending" not in published and "n1" not in published
    assert [kind for kind, _ in trace(bus) if kind == "dead-letter"] == ["dead-letter"]
    manager.store.close()


def test_a_failed_heartbeat_part_is_not_kept_for_the_next(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a manager with t1 and t2 running on n1, and heartbeats sent one container a part
    manager, _ = manager_with_a_node(store_url)
    running_task(manager, "t1")
    running_task(manager, "t2")
    monkeypatch.setattr(messages, "HELD_PER_PART", 1)
    later = NOW + timedelta(seconds=2)
    manager.clock = lambda: later
    beat = Heartbeat(node="n1", at=later, cpus=4, memory=1024**3, disk=1024**3, inventory=True)
    held = [
        HeldTask(task_id=t, attempt=1, state=TaskState.RUNNING, container_id="c")
        for t in ("t1", "t2")
    ]
    first, second = beat.in_parts(held)
    # when the handler of the first part fails as it records
    real_commit = manager.commit

    def failing_commit(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(manager, "commit", failing_commit)
    deliver(manager, result(1, encode(first)))
    monkeypatch.setattr(manager, "commit", real_commit)
    # then no part is held for n1, and the second part alone ends nothing (not whole)
    assert manager._heartbeat_parts == {}
    deliver(manager, result(2, encode(second)))
    assert {t.id for t in manager.store.tasks([TaskState.RUNNING])} == {"t1", "t2"}
    manager.store.close()


def test_a_refused_message_is_dead_lettered_at_once_with_its_reason(store_url: str) -> None:
    # given a manager with a node
    manager, bus = manager_with_a_node(store_url)
    # when an update about a task it does not know arrives
    update = TaskUpdate(node="n1", task_id="nope", attempt=1, state=TaskState.RUNNING, at=NOW)
    deliver(manager, result(1, encode(update)))
    manager.finish_batch()
    # then it is dead-lettered once, with the reason, and acked
    assert trace(bus) == [("dead-letter", "update about unknown task 'nope'"), ("ack", 1)]
    manager.store.close()


def test_a_batch_the_broker_refuses_is_kept_and_sent_again(store_url: str) -> None:
    # given a manager whose broker refuses the next publish (a nack)
    manager, bus = manager_with_a_node(store_url)
    bus.fail_next = MessagingError("the broker refused 3 of 3 messages")
    deliver(manager, submit(1, "t1"))
    # when the batch finishes: nothing is acked, and the manager carries on
    manager.finish_batch()
    assert [kind for kind, _ in trace(bus)] == []
    assert manager.store.task("t1") is not None
    # then once the backoff passed, the batch goes out and is acked
    manager._retry_at = 0.0
    manager.finish_batch()
    assert [key for kind, key in trace(bus) if kind == "publish"].count("n1") == 1
    assert [tag for kind, tag in trace(bus) if kind == "ack"] == [1]
    manager.store.close()


def silent_node_manager(store_url: str) -> tuple[Manager, StubBus]:
    """A manager whose node n1 has been silent for longer than node_down_after, and which
    published (and had confirmed) a batch since its last tick."""
    manager, bus = manager_with_a_node(store_url)
    manager.store.commit()
    advance(manager, manager.config.node_down_after + 5)
    manager._sent_at = manager.monotonic()
    return manager, bus


def node_status(manager: Manager, name: str) -> NodeStatus:
    node = manager.store.node(name)
    assert node is not None
    return node.status


def test_a_silent_node_is_down_whatever_the_clock_of_another_worker(store_url: str) -> None:
    # given a silent n1, and a heartbeat from n2 whose clock is 60 s behind, just read
    manager, bus = silent_node_manager(store_url)
    skewed = Heartbeat(
        node="n2", at=manager.clock() - timedelta(seconds=60), cpus=1, memory=1, disk=1
    )
    manager.on_result(result(1, encode(skewed)))
    manager.finish_batch()
    manager._sent_at = manager.monotonic()
    # when the manager ticks, and reads back its probe of the results queue, and ticks
    judge_silence(manager, bus)
    # then n1 is down, and n2, just heard from, ready
    assert node_status(manager, "n1") == NodeStatus.DOWN
    assert node_status(manager, "n2") == NodeStatus.READY
    manager.store.close()


def test_no_node_is_judged_silent_while_the_broker_blocks_publishers(store_url: str) -> None:
    # given a silent n1, and a broker that blocks publishers
    manager, bus = silent_node_manager(store_url)
    bus.on_blocked(manager.on_blocked)
    bus.block(True)
    # when the manager ticks
    manager.ticking()
    # then n1 stays ready
    assert node_status(manager, "n1") == NodeStatus.READY
    # and once unblocked, it gets a full interval again before it is called down
    bus.block(False)
    manager.ticking()
    assert node_status(manager, "n1") == NodeStatus.READY
    manager.store.close()


def test_silence_is_judged_only_once_a_publish_since_the_last_tick_was_confirmed(
    store_url: str,
) -> None:
    # given a silent n1, and a manager that published nothing since its last tick
    manager, bus = silent_node_manager(store_url)
    manager._sent_at = None
    # when it ticks, it only probes the broker
    manager.ticking()
    assert node_status(manager, "n1") == NodeStatus.READY
    manager.finish_batch()
    assert ("publish", "kube.manager.probe") in trace(bus)
    # then at the next tick, the probe confirmed, n1 is down once the results queue's
    # probe is read back
    judge_silence(manager, bus)
    assert node_status(manager, "n1") == NodeStatus.DOWN
    manager.store.close()


def judge_silence(manager: Manager, bus: StubBus) -> None:
    """Tick (sending a probe of the results queue), read the probe back, and tick again."""
    manager.ticking()
    manager.finish_batch()
    assert read_probes_back(manager, bus) == 1
    manager.ticking()


def test_a_heartbeat_read_before_the_probe_saves_its_node(store_url: str) -> None:
    # given a silent n1
    manager, bus = silent_node_manager(store_url)
    # when the manager ticks, it judges nothing yet: it probes its results queue
    manager.ticking()
    manager.finish_batch()
    assert node_status(manager, "n1") == NodeStatus.READY
    assert [p.routing_key for p in bus.published].count(topology.RESULTS_PROBE_KEY) == 1
    # and when a heartbeat of n1's that was in flight (in the prefetch window, which the
    # queue's depth does not count) is read before the probe comes back
    beat = Heartbeat(node="n1", at=manager.clock(), cpus=1, memory=1, disk=1)
    deliver(manager, result(1, encode(beat)))
    assert read_probes_back(manager, bus) == 1
    manager.finish_batch()
    manager.ticking()
    # then n1 is not down, and no probe is sent for it
    assert node_status(manager, "n1") == NodeStatus.READY
    assert [p.routing_key for p in bus.published].count(topology.RESULTS_PROBE_KEY) == 1
    manager.store.close()


def test_silence_is_counted_up_to_the_probe_read_back(store_url: str) -> None:
    # given n1 silent past the interval, and n2 heard 2 s later than n1
    manager, bus = manager_with_a_node(store_url)
    manager.store.commit()
    advance(manager, 2)
    beat = Heartbeat(node="n2", at=manager.clock(), cpus=1, memory=1, disk=1)
    deliver(manager, result(1, encode(beat)))
    advance(manager, manager.config.node_down_after)
    manager._sent_at = manager.monotonic()
    # when the manager probes (n1 silent), and ticks 3 s later, with the probe read back
    manager.ticking()
    manager.finish_batch()
    advance(manager, 3)
    assert read_probes_back(manager, bus) == 1
    manager._sent_at = manager.monotonic()
    manager.ticking()
    # then n1, silent past the interval when the probe was made, is down; n2, silent past
    # it only now (its heartbeat may wait behind the probe), is not, and is probed for
    assert node_status(manager, "n1") == NodeStatus.DOWN
    assert node_status(manager, "n2") == NodeStatus.READY
    manager.finish_batch()
    assert [p.routing_key for p in bus.published].count(topology.RESULTS_PROBE_KEY) == 2
    manager.store.close()


def test_a_probe_the_manager_did_not_make_proves_nothing_and_is_only_acked(
    store_url: str,
) -> None:
    # given a silent n1, and a probe of the results queue out
    manager, bus = silent_node_manager(store_url)
    manager.ticking()
    manager.finish_batch()
    # when a worker sends a probe of its own making
    forged = messages.ResultsProbe(id="0" * 32, at=manager.clock())
    deliver(manager, result(1, encode(forged)))
    manager.finish_batch()
    manager.ticking()
    # then n1 is still ready, and the forgery was acked, not dead-lettered
    assert node_status(manager, "n1") == NodeStatus.READY
    assert [d.tag for d in bus.acked] == [1] and not bus.dead_letters
    manager.store.close()


def test_a_lost_probe_is_sent_again(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # given a silent n1, and a probe of the results queue that is lost (a purge)
    manager, bus = silent_node_manager(store_url)
    manager.ticking()
    manager.finish_batch()
    bus.published.clear()
    # when it has not come back for a few ticks, another is sent, and says why
    for _ in range(int(silence.PATIENCE)):
        manager._sent_at = manager.monotonic()
        manager.ticking()
        advance(manager, 1)
    manager._sent_at = manager.monotonic()
    with caplog.at_level(logging.INFO, logger="manager.server"):
        manager.ticking()
    manager.finish_batch()
    assert "not read back after 5.0s" in caplog.text
    # then once that one is read back, n1 is down
    assert read_probes_back(manager, bus) == 1
    manager._sent_at = manager.monotonic()
    manager.ticking()
    assert node_status(manager, "n1") == NodeStatus.DOWN
    manager.store.close()


def test_a_reconnect_forgets_the_probes(store_url: str) -> None:
    # given a silent n1 whose probe came back, then a reconnect before the next tick
    manager, bus = silent_node_manager(store_url)
    manager.ticking()
    manager.finish_batch()
    read_probes_back(manager, bus)
    manager.on_connect()
    # when the manager ticks once the node is silent past the interval again
    advance(manager, manager.config.node_down_after + 1)
    manager._sent_at = manager.monotonic()
    manager.ticking()
    # then the probe read before the reconnect proves nothing: n1 waits for a new one
    assert node_status(manager, "n1") == NodeStatus.READY
    judge_silence(manager, bus)
    assert node_status(manager, "n1") == NodeStatus.DOWN
    manager.store.close()


def test_a_dead_letter_copy_fits_the_brokers_frame() -> None:
    # given a message with 200 KB of headers and a body over the wire limit
    big = command(1, topology.SUBMIT_KEY, b"x" * (MAX_BODY_BYTES + 10))
    big = Delivery(**{**big.__dict__, "headers": {"h": "y" * 200_000, "small": "s"}})
    # when its dead-letter copy is made
    copy = dead_letter_copy(big, "too big")
    # then its headers fit a frame, say what was left out, and carry the reason
    headers = copy.headers or {}
    assert "h" not in headers and headers["x-kube-headers-dropped"] == "h"
    assert headers[topology.REASON_HEADER] == "too big"
    assert len(copy.body) == MAX_BODY_BYTES
    assert headers["x-kube-body-trimmed"] == MAX_BODY_BYTES + 10


def test_a_lost_connection_is_not_taken_for_a_refused_batch(store_url: str) -> None:
    # given a manager whose connection is lost at the next publish
    manager, bus = manager_with_a_node(store_url)
    bus.fail_next = ConnectionLost("gone")
    deliver(manager, submit(1, "t1"))
    # when the batch finishes, the loss goes up to the bus, which reconnects
    with pytest.raises(ConnectionLost):
        manager.finish_batch()
    # then no backoff holds the batch sent again on the next connection
    manager.on_connect()
    assert [key for kind, key in trace(bus) if kind == "publish"].count("n1") == 1
    manager.store.close()


def test_a_dropped_delivery_that_moved_the_blocked_index_has_it_rebuilt(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a manager whose blocked index is current
    manager, _ = manager_with_a_node(store_url)
    manager.schedule_pending()
    assert not manager.blocked.stale
    failing_after_write(manager, monkeypatch)
    # when a submit is placed (moving the index) and then its handler fails
    deliver(manager, submit(1, POISON))
    # then the index is rebuilt from the store before it is used again
    assert manager.blocked.stale
    # and a refusal that recorded nothing leaves it alone
    manager.blocked.stale = False
    deliver(manager, command(2, topology.SUBMIT_KEY, b"{not json"))
    assert not manager.blocked.stale


@pytest.mark.parametrize("step", [60, -60])
def test_a_step_of_the_managers_wall_clock_changes_no_decision(store_url: str, step: int) -> None:
    # given a node just heard, and a manager whose wall clock is then stepped by a minute
    manager, bus = manager_with_a_node(store_url)
    manager.store.commit()
    wall = manager.clock() + timedelta(seconds=step)
    manager.clock = lambda: wall
    advance(manager, 1)
    manager._sent_at = manager.monotonic()
    # when it ticks, the node is not down: it was heard a second ago
    manager.tick()
    assert node_status(manager, "n1") == NodeStatus.READY
    # then once the node is silent for the interval, by the monotonic clock, it is down
    advance(manager, manager.config.node_down_after)
    manager._sent_at = manager.monotonic()
    judge_silence(manager, bus)
    assert node_status(manager, "n1") == NodeStatus.DOWN
    manager.store.close()
