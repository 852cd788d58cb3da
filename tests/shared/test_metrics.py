"""The bus's message counters against the real broker, and the /metrics endpoint itself."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from shared.bus import Bus, Delivery
from shared.errors import MetricsError, UnroutableError
from shared.metrics import WithLabels, serve
from shared.settings import Settings
from shared.topology import EXCHANGES, Binding, Queue, Topology
from tests.conftest import rabbitmqctl
from tests.support.ports import free_port
from tests.support.waiting import wait_for

QUEUE = "test.metrics"
WORK = Topology(
    queues=(Queue(QUEUE, arguments={"x-queue-type": "quorum"}),),
    bindings=(Binding(QUEUE, "kube.commands", "test.#"),),
)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def bus(vhost: str) -> Iterator[Bus]:
    bus = Bus(Settings(amqp_url=vhost), "test-metrics")
    bus.declare(EXCHANGES + WORK)
    yield bus
    bus.close()


def test_publishes_consumes_and_dead_letters_are_counted(bus: Bus) -> None:
    # given: a handler that acks "ok", dead-letters "bad" and raises on anything else
    def handle(delivery: Delivery) -> None:
        if delivery.body == b"ok":
            bus.ack(delivery)
        elif delivery.body == b"bad":
            bus.dead_letter(delivery, "bad input")
        else:
            raise ValueError("boom")

    before = {
        "confirmed": value(
            "kube_messages_published_total", exchange="kube.commands", outcome="confirmed"
        ),
        "returned": value(
            "kube_messages_published_total", exchange="kube.commands", outcome="returned"
        ),
        "handled": value("kube_messages_consumed_total", queue=QUEUE, outcome="handled"),
        "failed": value("kube_messages_consumed_total", queue=QUEUE, outcome="failed"),
        "dead": value("kube_messages_dead_lettered_total", queue=QUEUE),
    }
    bus.consume(QUEUE, handle, requeue_on_error=False)
    # a consumer's counters exist from the start, so increase() counts its first message
    assert (
        REGISTRY.get_sample_value("kube_messages_dead_lettered_total", {"queue": QUEUE}) is not None
    )
    bus.connect()
    # when
    for body in (b"ok", b"bad", b"boom"):
        bus.publish("kube.commands", "test.x", body)
    with pytest.raises(UnroutableError):
        bus.publish("kube.commands", "nowhere", b"lost", mandatory=True)
    wait_for(
        lambda: (
            bus.process_events(0.1)
            or value("kube_messages_consumed_total", queue=QUEUE, outcome="failed")
            > before["failed"]
        ),
        timeout=10,
        what="the three deliveries",
    )
    # then
    published = value(
        "kube_messages_published_total", exchange="kube.commands", outcome="confirmed"
    )
    assert published == before["confirmed"] + 3
    returned = value("kube_messages_published_total", exchange="kube.commands", outcome="returned")
    assert returned == before["returned"] + 1
    assert (
        value("kube_messages_consumed_total", queue=QUEUE, outcome="handled")
        == before["handled"] + 2
    )
    assert (
        value("kube_messages_consumed_total", queue=QUEUE, outcome="failed") == before["failed"] + 1
    )
    assert value("kube_messages_dead_lettered_total", queue=QUEUE) == before["dead"] + 1
    assert (
        value("kube_messages_published_total", exchange="kube.dead-letter", outcome="confirmed")
        >= 1
    )


def test_counters_keep_counting_across_a_reconnect(bus: Bus, vhost: str) -> None:
    # given: a running bus that has handled one message
    connects: list[int] = []
    bus.on_connect(lambda: connects.append(1))
    bus.consume(QUEUE, bus.ack)
    threading.Thread(target=bus.run, daemon=True).start()
    wait_for(lambda: connects, timeout=10, what="the first connection")
    start = value("kube_messages_consumed_total", queue=QUEUE, outcome="handled")
    bus.call_threadsafe(lambda: bus.publish("kube.commands", "test.one", b"1"))
    wait_for(
        lambda: value("kube_messages_consumed_total", queue=QUEUE, outcome="handled") == start + 1
    )
    # when: the broker drops the connection and the bus makes a new one
    rabbitmqctl("close_all_connections", "-p", vhost.rsplit("/", 1)[1], "forced")
    wait_for(lambda: len(connects) >= 2, timeout=30, what="the reconnection")
    bus.call_threadsafe(lambda: bus.publish("kube.commands", "test.two", b"2"))
    # then: the count goes on from where it was
    wait_for(
        lambda: value("kube_messages_consumed_total", queue=QUEUE, outcome="handled") == start + 2,
        what="the second delivery counted",
    )


# -- the endpoint -------------------------------------------------------------------------


def test_serve_exposes_the_collectors_with_constant_labels() -> None:
    registry = CollectorRegistry()
    Counter("kube_test_things", "Things.", registry=registry).inc(2)
    server = serve(free_port(), [WithLabels(registry, {"node": "n1"})], addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.close()
    assert 'kube_test_things_total{node="n1"} 2.0' in text


def test_port_zero_serves_nothing() -> None:
    assert serve(0, [REGISTRY]) is None


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            MetricsError, match=f"port {port}: it is already in use .*--metrics-port"
        ):
            serve(port, [REGISTRY], addr="127.0.0.1")
