"""Prometheus metrics every kube process shares: the bus's message counters and /metrics.

The counters live in prometheus-client's default registry, so they count across
reconnects for the life of the process (Prometheus's `rate()` copes with the reset a
restart causes). Label values are bounded: queue and exchange names, never a task id.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from shared.errors import MetricsError

log = logging.getLogger(__name__)

MANAGER_PORT = 9464
"""Where `kube manager` serves /metrics unless told otherwise."""

WORKER_PORT = 9465
"""Where `kube worker` serves /metrics unless told otherwise (one worker per host)."""

DEFAULT_EXCHANGE = "amq.default"
"""The label for the nameless default exchange (replies), as RabbitMQ names it."""

CONSUMED = Counter(
    "kube_messages_consumed",
    "Messages delivered to a handler, by queue and outcome (handled or failed).",
    ["queue", "outcome"],
)
PUBLISHED = Counter(
    "kube_messages_published",
    "Messages published, by exchange and outcome (confirmed, returned or nacked).",
    ["exchange", "outcome"],
)
DEAD_LETTERED = Counter(
    "kube_messages_dead_lettered",
    "Messages kube moved to the dead-letter exchange, by the queue they came from.",
    ["queue"],
)


def consuming(queue: str) -> None:
    """Start a consumer's counters at 0, so that `increase()` sees their first message."""
    for outcome in ("handled", "failed"):
        CONSUMED.labels(queue, outcome)
    DEAD_LETTERED.labels(queue)


def consumed(queue: str, outcome: str) -> None:
    """A handler returned (`handled`) or raised (`failed`) for a message of queue."""
    CONSUMED.labels(queue, outcome).inc()


def published(exchange: str, outcome: str) -> None:
    """The broker confirmed, returned or nacked a publish to exchange."""
    PUBLISHED.labels(exchange or DEFAULT_EXCHANGE, outcome).inc()


def dead_lettered(queue: str) -> None:
    """A message of queue was dead-lettered with its reason."""
    DEAD_LETTERED.labels(queue).inc()


class WithLabels:
    """A collector that adds constant labels (a worker's `node`) to another's samples."""

    def __init__(self, source: Collector, labels: Mapping[str, str]) -> None:
        self._source = source
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                Sample(s.name, {**s.labels, **self._labels}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
            yield labelled


@dataclass
class MetricsServer:
    """A running /metrics endpoint; close() stops it."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(port: int, collectors: Iterable[Collector], addr: str = "") -> MetricsServer | None:
    """Serve the collectors on http://addr:port/metrics; port 0 serves nothing.

    Raises MetricsError, naming the flag to change, when the port cannot be bound.
    """
    if port == 0:
        return None
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` doubles counters
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=addr or "0.0.0.0", registry=registry)
    except OSError as exc:
        why = "it is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise MetricsError(
            f"cannot serve metrics on port {port}: {why}"
            " (choose another with --metrics-port N, or turn metrics off with --metrics-port 0)"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", addr or "0.0.0.0", port)
    return MetricsServer(server, thread)
