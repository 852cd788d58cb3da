"""StubBus, the in-memory bus shipped for tests: records what a real bus would do."""

from __future__ import annotations

import threading

import pytest

from shared.bus import Delivery, MessageBus, StubBus
from shared.errors import ConnectionLost
from shared.topology import DEAD_LETTER, REASON_HEADER


def test_a_delivered_message_reaches_its_consumer_and_its_ack_is_recorded() -> None:
    # given a stub with a consumer that replies and acks
    bus = StubBus()
    seen: list[Delivery] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery)
        bus.reply(delivery, b'{"ok": true}')
        bus.ack(delivery)

    bus.consume("q", handle)
    # when a request is delivered
    delivery = bus.deliver("q", b"{}", routing_key="k", reply_to="r", correlation_id="c")
    # then the handler saw it, the reply went to its reply queue, and it was acked once
    assert seen == [delivery] and delivery.tag == 1
    assert [(p.exchange, p.routing_key, p.correlation_id) for p in bus.published] == [
        ("", "r", "c")
    ]
    assert [kind for kind, _ in bus.log] == ["publish", "ack"]
    bus.ack(delivery)  # a second ack is ignored, as the real bus does
    assert bus.acked == [delivery]


def test_a_failing_handler_gets_its_message_rejected_as_its_consumer_says() -> None:
    # given consumers that fail, one requeueing and one not
    bus = StubBus()

    def fail(delivery: Delivery) -> None:
        raise ValueError("boom")

    bus.consume("requeued", fail)
    bus.consume("dropped", fail, requeue_on_error=False)
    # when each gets a message
    first = bus.deliver("requeued", b"1")
    second = bus.deliver("dropped", b"2")
    # then both were rejected, the first requeued, and nothing was acked
    assert bus.rejected == [(first, True), (second, False)]
    assert bus.acked == []


def test_a_lost_connection_in_a_handler_goes_up_as_on_the_real_bus() -> None:
    bus = StubBus()

    def lose(delivery: Delivery) -> None:
        raise ConnectionLost("gone")

    bus.consume("q", lose)
    with pytest.raises(ConnectionLost):
        bus.deliver("q", b"x")
    assert bus.rejected == []


def test_a_dead_letter_keeps_its_reason_and_the_delivery_is_acked() -> None:
    bus = StubBus()
    bus.consume("q", lambda d: bus.dead_letter(d, "invalid: no name"))
    delivery = bus.deliver("q", b"oops", routing_key="task.submit", exchange="kube.commands")
    assert bus.dead_letters == [(delivery, "invalid: no name")]
    (letter,) = bus.published
    assert (letter.exchange, letter.routing_key) == (DEAD_LETTER, "task.submit")
    assert letter.headers[REASON_HEADER] == "invalid: no name"
    assert letter.headers["x-kube-queue"] == "q"
    assert bus.acked == [delivery]


def test_timers_hooks_and_callbacks_run_only_when_the_test_says() -> None:
    # given a stub with a timer, an after_events hook, an on_connect hook
    bus = StubBus()
    ran: list[str] = []
    bus.every(5.0, lambda: ran.append("timer"))
    bus.after_events(lambda: ran.append("after"))
    bus.on_connect(lambda: ran.append("connect"))
    # when another thread queues a callback
    thread = threading.Thread(target=bus.call_threadsafe, args=(lambda: ran.append("cb"),))
    thread.start()
    thread.join()
    # then nothing ran yet; each runs when driven, callbacks before the hooks
    assert ran == [] and len(bus.callbacks) == 1
    bus.connect()
    bus.fire_timers()
    bus.process_events()
    assert ran == ["connect", "timer", "cb", "after"]


def test_after_a_reconnect_deliveries_of_the_old_channel_are_not_settled() -> None:
    bus = StubBus()
    bus.consume("q", lambda d: None)
    old = bus.deliver("q", b"1")
    bus.reconnect()
    new = bus.deliver("q", b"2")
    bus.ack_batch([old, new])
    assert bus.acked == [new]


def test_a_failure_can_be_staged_for_the_next_publish() -> None:
    bus = StubBus()
    bus.fail_next = ConnectionLost("lost")
    with pytest.raises(ConnectionLost):
        bus.publish_batch([bus.message("x", "k", b"1")])
    bus.publish_batch([bus.message("x", "k", b"2")])
    assert [p.body for p in bus.published] == [b"2"]


def test_the_stub_runs_and_stops_like_a_bus() -> None:
    # given a stub serving on its own thread, as Manager.run and Worker.run do
    bus: MessageBus = StubBus()
    done = threading.Event()
    thread = threading.Thread(target=bus.run)
    thread.start()
    # when another thread asks it to do something, then stop
    bus.call_threadsafe(done.set)
    assert done.wait(5)
    bus.stop()
    thread.join(5)
    # then it ran the callback and returned
    assert not thread.is_alive() and bus.stopping
