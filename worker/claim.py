"""One worker per node name: who holds a name, and why another worker may not take it.

The broker knows the holder by the exclusive queue its connection holds,
`kube.lock.node.<name>` (shared/topology.py): a second connection's declare of it is
refused in one step, so two workers started at the same instant cannot both take the name
(the count of consumers on the node's queue, checked first, only words the refusal). A
worker killed on a host that stays up loses its connection at once (the kernel closes it),
and a new one may take the name at once: it finds the containers by their node label and
reports them. A worker whose host vanished (power, a partition) keeps its connection on
the broker until the broker misses two AMQP heartbeats (30 s each,
shared/bus/connection.py); meanwhile a second worker is refused. Once its connection is
gone, a worker on *another* host is still refused while the manager holds the node ready
(until it has been silent for the node-down interval): its containers may still run on the
first host.
"""

from __future__ import annotations

import logging

from pydantic import TypeAdapter

from shared import topology
from shared.codec import decode, encode
from shared.messages import ListQuery
from shared.models import NodeRecord, NodeStatus, Reply
from shared.rpc import RpcChannel
from shared.settings import Settings

log = logging.getLogger(__name__)

ASK_TIMEOUT = 3.0
"""Seconds a refused worker waits for the manager to say who holds its name."""

REPLY = TypeAdapter(Reply)
NODES = TypeAdapter(list[NodeRecord])


def holder(settings: Settings, name: str, timeout: float = ASK_TIMEOUT) -> NodeRecord | None:
    """The manager's record of node `name`; None when there is none, or when this worker's
    broker user may not ask (deploy/rabbitmq's worker users may only write results)."""
    try:
        with RpcChannel(settings, f"kube-worker-{name}-claim") as rpc:
            raw = rpc.request(
                topology.COMMANDS, "query.nodes", encode(ListQuery()), timeout=timeout
            )
        reply = decode(REPLY, raw)
        nodes = NODES.validate_python(reply.result or []) if reply.ok else []
    except Exception as exc:  # noqa: BLE001 - only the refusal's wording depends on it
        log.info("worker %s: could not ask the manager who holds the name: %s", name, exc)
        return None
    return next((node for node in nodes if node.name == name), None)


def describe(node: NodeRecord) -> str:
    """Who holds a node, as the manager saw it: host, pid and since when."""
    where = f"host {node.hostname or '?'}, pid {node.pid or '?'}"
    since = f", since {node.ready_since.isoformat(timespec='seconds')}" if node.ready_since else ""
    return f"{where}{since}, {node.status.value}"


def taken(name: str, held: NodeRecord | None) -> str:
    """Why a worker may not take node `name` that another running worker holds."""
    who = f" ({describe(held)})" if held is not None else " (`kube nodes` shows its host)"
    return (
        f"another worker named {name} is running{who}: one worker per node name;"
        " stop it, or give this one another --name"
    )


def refusal(name: str, consumers: int, held: NodeRecord | None, hostname: str) -> str | None:
    """Why a worker on `hostname` may not take node `name` whose queue has `consumers`
    (the manager's record `held`, if known), or None."""
    if consumers:
        return taken(name, held)
    if (
        held is not None
        and held.status == NodeStatus.READY
        and held.hostname is not None
        and held.hostname != hostname
    ):
        return (
            f"node {name} is held by a worker on {describe(held)}, which may still run its"
            " containers: start this one once `kube nodes` shows it down (after the"
            " manager's --node-down-after), or give this one another --name"
        )
    return None
