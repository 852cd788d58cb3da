"""Every exchange, queue and binding kube uses, by name, as plain data.

The bus (`shared.bus`) turns these declarations into AMQP calls; nothing else names a
queue or an exchange. Queues that carry work are quorum queues: durable, replicated when
the broker is a cluster, and with a delivery limit, so a message that keeps crashing its
consumer is dead-lettered instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMMANDS = "kube.commands"  # topic: task.*, service.*, node.* commands and query.*
EVENTS = "kube.events"  # topic: task.<state>, node.<what>; the manager publishes
EVENTS_STREAM = "kube.events.stream"  # stream queue: every event, where clients read them
DISPATCH = "kube.dispatch"  # direct: manager to worker, routing key = node name
RESULTS = "kube.results"  # topic: worker to manager, result.<kind>.<node>
DEAD_LETTER = "kube.dead-letter"  # fanout: rejected and poison messages
RESULTS_PROBE_KEY = "manager.probe"
"""Routing key on kube.results of the manager's probe of its own results queue
(manager/silence.py): outside result.<kind>.<node>, so no worker's topic permission
lets it publish one (kube/definitions.py)."""

COMMANDS_QUEUE = "kube.manager.commands"
QUERIES_QUEUE = "kube.manager.queries.quorum"
"""A quorum queue, like the other queues of the manager: a classic durable queue lives on
one RabbitMQ node, and while that node is down no manager can declare it on another, so
the whole control plane waited for the node to come back (docs/brokers.md). The name
changed with the type because RabbitMQ refuses a declare that changes a queue's type; the
classic `kube.manager.queries` of earlier versions is left to the operator to delete."""
RESULTS_QUEUE = "kube.manager.results"
DEAD_LETTER_QUEUE = "kube.dead-letters"
MANAGER_LOCK = "kube.manager.lock"
"""An exclusive queue the active manager holds: a second manager on the vhost cannot
declare it, and refuses to start instead of splitting the cluster."""
MANAGER_HOLDER = "kube.lock-holder.quorum"
"""Who holds the lock (a ManagerInfo, the one message kept): the lock queue itself cannot
be read by another connection, so a manager refused can name the one that runs only
from here. Not under kube.manager.: those queues hold work, empty when it is done.
A quorum queue: the classic `kube.lock-holder` of the previous version lived on one node,
and a manager that lost that node waited for it to come back before it declared its
topology again (measured: placements paused 9 s with the node stopped 5 s). RabbitMQ
refuses a declare that changes a queue's type, hence the new name."""
UP_LOCK = "kube.up.lock"
"""An exclusive queue a `kube up` holds while it starts its cluster: a second one started
at the same instant waits for it, then finds its manager and refuses (kube/up.py)."""
DEAD_DISPATCHES_QUEUE = "kube.manager.dead-dispatches"
"""The manager's copy of every dead letter, read for dispatches that never reached a
worker (the broker's delivery limit, or a worker refusing it): their tasks would
otherwise stay scheduled for ever. Its own refusals go nowhere: no dead-letter exchange."""
DEAD_DISPATCHES_LIMIT = 10_000

SUBMIT_KEY = "task.submit"
STOP_KEY = "task.stop"
REMOVE_KEY = "task.remove"
SCALE_KEY = "service.scale"
UPDATE_KEY = "service.update"
CORDON_KEY = "node.cordon"
UNCORDON_KEY = "node.uncordon"
DRAIN_KEY = "node.drain"
NODE_REMOVE_KEY = "node.remove"
NODE_SET_KEY = "node.set"
ORPHANS_REMOVE_KEY = "orphans.remove"
ORPHANS_ADOPT_KEY = "orphans.adopt"
JOB_REMOVE_KEY = "job.remove"
JOB_RUN_KEY = "job.run"
VOLUME_REMOVE_KEY = "volume.remove"
QUERY_PREFIX = "query."
# Secrets and configs (docs/secrets.md): an operator's, as Swarm keeps them to managers.
SECRET_KEYS = tuple(
    f"{kind}.{verb}" for kind in ("secret", "config") for verb in ("create", "update", "remove")
)
EXEC_PREFIX = "exec."
EXEC_OPEN_KEY = "exec.open"
EXEC_INPUT_KEY = "exec.input"
"""`kube exec` (a session: docs/wire-contract.md#streaming-sessions): an operator's, never
under query.*, which every client may publish. Answered at once like a query, so it is
bound to the queries queue; the commands queue passes over it."""
STREAM_OPEN_KEY = "query.stream.open"
"""A client opens a streaming session (shared/sessions.py): a query, so any client may."""
STREAM_INPUT_KEY = "query.stream.input"
"""A client's input to its session: acks, lease renewals, stdin, close."""

CLIENT_COMMAND_KEYS = (
    SUBMIT_KEY,
    STOP_KEY,
    SCALE_KEY,
    UPDATE_KEY,
    REMOVE_KEY,
    JOB_REMOVE_KEY,
    JOB_RUN_KEY,
    VOLUME_REMOVE_KEY,
)
"""What a client may ask (and queries): the broker user kube-client."""
OPERATOR_COMMAND_KEYS = (
    CORDON_KEY,
    UNCORDON_KEY,
    DRAIN_KEY,
    NODE_REMOVE_KEY,
    NODE_SET_KEY,
    ORPHANS_REMOVE_KEY,
    ORPHANS_ADOPT_KEY,
    *SECRET_KEYS,
    EXEC_OPEN_KEY,
    EXEC_INPUT_KEY,
)
"""An operator's acts on nodes and their orphan containers, secrets and configs, and
`kube exec` (and queries): the broker user kube-operator."""

ANSWERED_KEYS = (QUERY_PREFIX, EXEC_PREFIX)
"""Prefixes of the routing keys the queries queue takes (answered at once, never recorded
as commands): the commands queue, bound with "#", passes over them."""

EVENTS_RETENTION: dict[str, Any] = {
    "x-max-age": "1h",
    "x-max-length-bytes": 256 * 1024 * 1024,
    # retention drops whole segments: small ones make the bounds above hold closely
    "x-stream-max-segment-size-bytes": 8 * 1024 * 1024,
}
"""How long the events stream keeps what it holds: readers start at its end anyway."""

DELIVERY_LIMIT = 5
"""Deliveries of one message before a quorum queue dead-letters it (a crash loop)."""

QUERY_TTL_MS = 30_000
"""Queries nobody answered in 30 s are dropped: their asker has given up."""

REASON_HEADER = "x-kube-reason"

REPLY_QUEUE_PREFIXES = ("amq.rabbitmq.reply-to", "amq.gen-")
"""Where the manager sends answers: RabbitMQ's direct reply-to, or a server-named queue
(declared with an empty name). Never a named queue such as a worker's, which a client
may not write to itself: the manager must not write there on its behalf."""


def reply_refusal(reply_to: str | None) -> str | None:
    """Why a request's reply_to is refused (None: no reply_to, or an asker's own queue)."""
    if reply_to is None or reply_to.startswith(REPLY_QUEUE_PREFIXES):
        return None
    return (
        f"reply_to {reply_to[:300]!r} is not a reply queue: use amq.rabbitmq.reply-to or a"
        " server-named queue (declared with an empty name)"
    )


"""Header that says why kube dead-lettered a message."""


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    """What one component declares before it consumes or publishes."""

    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()

    def __add__(self, other: Topology) -> Topology:
        return Topology(
            self.exchanges + other.exchanges,
            self.queues + other.queues,
            self.bindings + other.bindings,
        )


def _work_queue(name: str) -> Queue:
    return Queue(
        name,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER,
        },
    )


EXCHANGES = Topology(
    exchanges=(
        Exchange(COMMANDS, "topic"),
        Exchange(EVENTS, "topic"),
        Exchange(DISPATCH, "direct"),
        Exchange(RESULTS, "topic"),
        Exchange(DEAD_LETTER, "fanout"),
    ),
    queues=(Queue(DEAD_LETTER_QUEUE, arguments={"x-queue-type": "quorum"}),),
    bindings=(Binding(DEAD_LETTER_QUEUE, DEAD_LETTER, ""),),
)


def node_queue(node: str) -> str:
    """The durable queue a worker consumes its dispatches from."""
    return f"kube.node.{node}"


def result_key(kind: str, node: str) -> str:
    return f"result.{kind}.{node}"


def manager_topology() -> Topology:
    """What the manager declares: all exchanges, its queues, the events stream, bindings.

    Clients read events from the stream, not from a queue of their own bound to
    kube.events: binding needs read on the source exchange, and a user with read on
    kube.events and write on kube.commands could bind the one into the other
    (exchange.bind asks no more), feeding every event back in as a command.
    """
    return EXCHANGES + Topology(
        queues=(
            _work_queue(COMMANDS_QUEUE),
            _work_queue(RESULTS_QUEUE),
            Queue(
                QUERIES_QUEUE,
                # message TTL on a quorum queue needs RabbitMQ 3.10 or later
                arguments={"x-queue-type": "quorum", "x-message-ttl": QUERY_TTL_MS},
            ),
            Queue(
                DEAD_DISPATCHES_QUEUE,
                arguments={
                    "x-queue-type": "quorum",
                    "x-max-length": DEAD_DISPATCHES_LIMIT,
                    "x-overflow": "drop-head",
                },
            ),
            Queue(EVENTS_STREAM, arguments={"x-queue-type": "stream", **EVENTS_RETENTION}),
        ),
        bindings=(
            # Every key, so that one nothing else takes is refused with a reason instead of
            # dropped by the broker without a word (queries come too and are passed over).
            Binding(COMMANDS_QUEUE, COMMANDS, "#"),
            Binding(QUERIES_QUEUE, COMMANDS, "query.#"),
            Binding(QUERIES_QUEUE, COMMANDS, "exec.#"),
            Binding(RESULTS_QUEUE, RESULTS, "#"),
            Binding(DEAD_DISPATCHES_QUEUE, DEAD_LETTER, ""),
            Binding(EVENTS_STREAM, EVENTS, "#"),
        ),
    )


def topic_matches(pattern: str, key: str) -> bool:
    """Whether a routing key matches an AMQP topic pattern: `*` one word, `#` any number."""

    def match(words: list[str], parts: list[str]) -> bool:
        if not words:
            return not parts
        if words[0] == "#":
            return any(match(words[1:], parts[i:]) for i in range(len(parts) + 1))
        return bool(parts) and words[0] in ("*", parts[0]) and match(words[1:], parts[1:])

    return match(pattern.split("."), key.split("."))


def manager_lock() -> Topology:
    """The manager's lock: declared first, before any queue is consumed; and the queue
    where its holder says who it is."""
    return Topology(
        queues=(
            Queue(MANAGER_LOCK, durable=False, exclusive=True, auto_delete=True),
            Queue(MANAGER_HOLDER, arguments={"x-queue-type": "quorum", "x-max-length": 1}),
        )
    )


def node_topology(node: str) -> Topology:
    """A node's dispatch queue; the manager and the worker both declare it (idempotent)."""
    return Topology(
        queues=(_work_queue(node_queue(node)),),
        bindings=(Binding(node_queue(node), DISPATCH, node),),
    )


def node_lock_queue(node: str) -> str:
    """The exclusive queue the worker that holds node `node` keeps declared."""
    return f"kube.lock.node.{node}"


def node_lock(node: str) -> Topology:
    """A worker's hold on its node name. The broker refuses a second connection's declare
    of an exclusive queue (405) in one step, so two workers started at the same instant
    cannot both pass; an exclusive *consume* would not do, as RabbitMQ (3.10) ignores that
    flag on a quorum queue such as the node's."""
    return Topology(
        queues=(Queue(node_lock_queue(node), durable=False, exclusive=True, auto_delete=True),)
    )


def worker_topology(node: str) -> Topology:
    """What a worker declares: the exchanges and its dispatch queue.

    Everything the manager asks of a worker (run, stop, logs) comes on that one queue, and
    everything it answers goes to kube.results: a worker's broker user needs no other.
    """
    return EXCHANGES + node_topology(node)
