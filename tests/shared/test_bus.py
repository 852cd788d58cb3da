"""The pika bus against the real broker: confirms, acks, dead letters, reconnection."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from shared.bus import Bus, Delivery
from shared.bus.message import Outbound
from shared.errors import ConnectionLost, MessagingError
from shared.settings import Settings
from shared.topology import DEAD_LETTER_QUEUE, EXCHANGES, REASON_HEADER, Binding, Queue, Topology
from tests.conftest import unavailable
from tests.support.partition import relayed
from tests.support.waiting import wait_for

WORK = Topology(
    queues=(Queue("test.work", arguments={"x-queue-type": "quorum"}),),
    bindings=(Binding("test.work", "kube.commands", "test.#"),),
)


@pytest.fixture
def bus(vhost: str) -> Iterator[Bus]:
    bus = Bus(Settings(amqp_url=vhost), "test-bus")
    bus.declare(EXCHANGES + WORK)
    yield bus
    bus.close()


def serve(bus: Bus) -> threading.Thread:
    thread = threading.Thread(target=bus.run, daemon=True)
    thread.start()
    return thread


def test_a_published_message_is_consumed_and_acked(bus: Bus) -> None:
    # given a consumer that acks what it gets
    got: list[Delivery] = []

    def handle(delivery: Delivery) -> None:
        got.append(delivery)
        bus.ack(delivery)

    bus.consume("test.work", handle)
    bus.connect()
    # when a message is published with a confirm
    bus.publish("kube.commands", "test.one", b"hello", headers={"a": "b"}, message_id="m1")
    # then it arrives with its properties
    wait_for(lambda: bus.process_events(0.1) or got, timeout=10, what="the delivery")
    assert (got[0].body, got[0].routing_key, got[0].message_id) == (b"hello", "test.one", "m1")
    assert got[0].headers == {"a": "b"}


def test_dead_letter_keeps_the_reason_in_a_header(bus: Bus) -> None:
    got: list[Delivery] = []
    bus.consume("test.work", lambda d: (got.append(d), bus.dead_letter(d, "bad thing")))
    bus.connect()
    bus.publish("kube.commands", "test.bad", b"oops")
    wait_for(lambda: bus.process_events(0.1) or got, timeout=10, what="the delivery")
    dead: list[Delivery] = []
    bus.consume(DEAD_LETTER_QUEUE, lambda d: (dead.append(d), bus.ack(d)))
    wait_for(lambda: bus.process_events(0.1) or dead, timeout=10, what="the dead letter")
    assert dead[0].body == b"oops"
    assert dead[0].headers[REASON_HEADER] == "bad thing"
    assert dead[0].headers["x-kube-queue"] == "test.work"


def test_a_handler_that_raises_does_not_stop_the_consumer(bus: Bus) -> None:
    seen: list[bytes] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery.body)
        if delivery.body == b"boom":
            raise ValueError("boom")
        bus.ack(delivery)

    bus.consume("test.work", handle, requeue_on_error=False)
    bus.connect()
    bus.publish("kube.commands", "test.x", b"boom")
    bus.publish("kube.commands", "test.x", b"fine")
    wait_for(lambda: bus.process_events(0.1) or b"fine" in seen, timeout=10, what="both")
    assert seen == [b"boom", b"fine"]


def test_the_bus_reconnects_after_the_broker_closes_its_connection(bus: Bus, vhost: str) -> None:
    # given a running bus consuming a queue
    got: list[bytes] = []
    connects: list[int] = []
    bus.on_connect(lambda: connects.append(1))
    bus.consume("test.work", lambda d: (got.append(d.body), bus.ack(d)))
    serve(bus)
    wait_for(lambda: connects, timeout=10, what="the first connection")
    # when the broker forces the connection closed (320 CONNECTION_FORCED, as on shutdown)
    subprocess.run(
        ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost.rsplit("/", 1)[1], "forced"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    # then the bus connects again by itself and consumes again
    wait_for(lambda: len(connects) >= 2, timeout=30, what="the reconnection")
    done = threading.Event()
    bus.call_threadsafe(lambda: (bus.publish("kube.commands", "test.after", b"after"), done.set()))
    wait_for(lambda: b"after" in got, timeout=10, what="a delivery after reconnecting")
    assert done.is_set()


def test_a_connection_the_broker_closed_is_connection_lost_for_the_caller(
    bus: Bus, vhost: str
) -> None:
    # given a connected bus whose connection the broker then forces closed
    bus.connect()
    subprocess.run(
        ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost.rsplit("/", 1)[1], "forced"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    # when it publishes (alone, or a batch) before it noticed, then the error is ours
    with pytest.raises(ConnectionLost):
        for _ in range(100):  # the close may take a moment to reach the client
            bus.publish("kube.commands", "test.lost", b"x")
            bus.process_events(0.05)


def test_a_batch_of_acks_settles_exactly_its_own_deliveries(bus: Bus, vhost: str) -> None:
    # given five deliveries that the handler leaves unacked
    got: list[Delivery] = []
    bus.consume("test.work", got.append)
    bus.connect()
    for i in range(5):
        bus.publish("kube.commands", "test.n", str(i).encode())
    wait_for(lambda: bus.process_events(0.1) or len(got) == 5, timeout=10, what="five deliveries")
    # when the first, second and fourth are acked as one batch, the fourth once more
    bus.ack_batch([got[3], got[0], got[1]])
    bus.ack_batch([got[3]])  # already settled: not sent again, which would close the channel
    bus.ack(got[4])
    bus.process_events(0.1)
    bus.close()
    # then only the third was left unacked: the broker gives it to the next consumer
    again: list[bytes] = []
    other = Bus(Settings(amqp_url=vhost), "test-bus-again")
    try:
        other.consume("test.work", lambda d: (again.append(d.body), other.ack(d)))
        other.connect()
        wait_for(lambda: other.process_events(0.1) or again, timeout=10, what="a redelivery")
        other.process_events(0.5)
    finally:
        other.close()
    assert again == [b"2"]


def test_a_bus_drops_a_silent_connection_at_once_and_connects_again_after_the_heal(
    vhost: str,
) -> None:
    if shutil.which("nft") is None:
        unavailable("needs nftables (`nft`, as root) to cut the connection off")
    broker = urlsplit(vhost)
    with relayed((broker.hostname or "127.0.0.1", broker.port or 5672)) as (relay, partition):
        # given a bus through a relay that presumes its connection dead after 1 s unconfirmed
        bus = Bus(Settings(amqp_url=relay.url(vhost)), "test-silent", silent_after=1.0)
        bus.declare(EXCHANGES + WORK)
        connects: list[float] = []
        bus.on_connect(lambda: connects.append(time.monotonic()))
        try:
            bus.connect()
            batch = [bus.message("kube.commands", "test.cut", b"x")]
            bus.publish_batch(batch)  # confirmed
            # when its link is cut and it publishes
            partition.cut()
            started = time.monotonic()
            with pytest.raises(ConnectionLost, match="presumed dead"):
                bus.publish_batch(batch)
            # then it gives the connection up at once, not after the close handshake (70 s)
            assert time.monotonic() - started < 3
            # and once healed, serving connects again (a fresh connection, not TCP's retry)
            partition.heal()
            serve(bus)
            wait_for(lambda: len(connects) == 2, timeout=30, what="a new connection")
        finally:
            bus.close()


FULL = Topology(
    queues=(
        Queue(
            "test.full",
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},  # classic: exact
        ),
    ),
    bindings=(Binding("test.full", "kube.commands", "full.#"),),
)


def test_a_refused_batch_is_an_error_and_the_connection_is_kept(vhost: str) -> None:
    # given a bus that does not presume silent connections dead, and a queue that refuses all
    bus = Bus(Settings(amqp_url=vhost), "test-nacked")
    bus.declare(EXCHANGES + FULL + WORK)
    try:
        bus.connect()
        # when a batch is published to it, then the refusal is raised
        with pytest.raises(MessagingError, match="refused 1 of 1") as caught:
            bus.publish_batch([Outbound("kube.commands", "full.one", b"x")])
        assert not isinstance(caught.value, ConnectionLost)
        # and the connection is kept: the next batch goes out on it
        bus.publish_batch([Outbound("kube.commands", "test.one", b"y")])
    finally:
        bus.close()


def test_a_worker_bus_connects_again_when_a_batch_is_refused(vhost: str) -> None:
    # given a bus that presumes silent connections dead (a worker's), and a full queue
    bus = Bus(Settings(amqp_url=vhost), "test-nacked", silent_after=5.0)
    bus.declare(EXCHANGES + FULL)
    try:
        bus.connect()
        # when a batch is refused, then the bus drops its connection, to make a new one
        with pytest.raises(ConnectionLost, match="connecting again"):
            bus.publish_batch([Outbound("kube.commands", "full.one", b"x")])
        with pytest.raises(ConnectionLost, match="not connected"):
            bus.publish_batch([Outbound("kube.commands", "full.two", b"x")])
    finally:
        bus.close()
