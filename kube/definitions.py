"""RabbitMQ definitions for a least-privilege kube: its users, their permissions, its topology.

    python -m kube.definitions --vhost kube --node node-1 --node node-2 > definitions.json
    python -m kube.definitions --vhost kube --node node-3 --workers-only \\
        --password-file pw | rabbitmqctl import_definitions   # add a worker

RabbitMQ grants configure/write/read per vhost as one regex each, matched against queue
and exchange names; those regexes know nothing of the user (only topic permissions expand
`{username}`), so every worker gets a user of its own, `kube-worker-<node>`:

    user           configure    write                                      read
    kube-manager   kube.*       kube.*, amq.default (replies)              kube.*
    kube-client    own queues   kube.commands (task.submit, task.stop,     kube.events.stream,
                                service.scale, service.update, query.*),   own queues
                                own queues
    kube-operator  nothing      kube.commands (node.cordon, node.uncordon, kube.events.stream
                                node.drain, exec.open, exec.input,
                                query.*)
    kube-worker-N  its lock     kube.results (result.*.N only)             its node queue
                   queue

Clients and operators read no exchange, so they can bind nothing: binding (queue.bind
and exchange.bind alike) needs read on the source, and with read on kube.events and
write on kube.commands a user could bind kube.events into kube.commands and feed every
event back in as a command. They read events from the stream `kube.events.stream`
instead. Topic permissions split kube.commands between them by routing key, and the
manager checks the `user_id` of an operator's commands too (`manager/auth.py`). `kube
exec` is an operator's (`exec.*`, never under `query.*`, which every client may publish).

Nobody but the manager may declare or delete the exchanges or the manager's queues. The
definitions declare the topology too, with the arguments `shared.topology` gives it (the
manager declares the same again: a mismatch would close its channel), so a worker's queue
and its binding exist before the worker first connects: a worker may not bind a queue to
`kube.dispatch`, since read on that exchange would let it bind its queue to another
node's key and receive that node's tasks.

Direct reply-to needs no permission to consume; answering one needs write on
`amq.default`, which would let a worker publish into any queue by name, so workers get
none: a worker answers `kube logs` on kube.results and the manager relays the answer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manager.auth import DEFAULT_WORKER_PREFIX
from shared import topology

MANAGER = "kube-manager"
CLIENT = "kube-client"
OPERATOR = "kube-operator"
HASHING = "rabbit_password_hashing_sha256"


@dataclass(frozen=True)
class Permission:
    user: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class TopicPermission:
    user: str
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Plan:
    """Who the users are and what each may do, in one vhost."""

    vhost: str
    nodes: tuple[str, ...]
    worker_prefix: str = DEFAULT_WORKER_PREFIX
    manager: str = MANAGER
    client: str = CLIENT
    operator: str = OPERATOR
    passwords: dict[str, str] = field(default_factory=dict)

    def worker(self, node: str) -> str:
        return f"{self.worker_prefix}{node}"

    @property
    def users(self) -> list[str]:
        return [
            self.manager,
            self.client,
            self.operator,
            *(self.worker(node) for node in self.nodes),
        ]


def _any(*names: str) -> str:
    return "^(" + "|".join(names) + ")$"


def permissions(plan: Plan) -> list[Permission]:
    kube = r"kube\..*"
    own = r"amq\.gen-.*"  # server-named queues: RabbitMQ refuses `amq.*` names from clients
    commands = re.escape(topology.COMMANDS)
    events = re.escape(topology.EVENTS_STREAM)  # a queue: no exchange to bind from
    found = [
        Permission(plan.manager, _any(kube), _any(kube, r"amq\.default"), _any(kube)),
        # own queues for scripts whose replies need one (direct reply-to needs none)
        Permission(plan.client, _any(own), _any(commands, own), _any(events, own)),
        Permission(plan.operator, "", _any(commands), _any(events)),
    ]
    for node in plan.nodes:
        queue = re.escape(topology.node_queue(node))
        lock = _any(re.escape(topology.node_lock_queue(node)))  # its hold on the name
        found.append(
            Permission(plan.worker(node), lock, _any(re.escape(topology.RESULTS)), _any(queue))
        )
    return found


def topic_permissions(plan: Plan) -> list[TopicPermission]:
    """Routing keys: a client asks for work, an operator acts on nodes, both may query;
    a worker reports on its own node only."""
    found = [
        TopicPermission(
            plan.client, topology.COMMANDS, _command_keys(topology.CLIENT_COMMAND_KEYS), "^$"
        ),
        TopicPermission(
            plan.operator, topology.COMMANDS, _command_keys(topology.OPERATOR_COMMAND_KEYS), "^$"
        ),
    ]
    for node in plan.nodes:
        key = re.escape(topology.result_key("KIND", node)).replace("KIND", "[a-z]+")
        found.append(TopicPermission(plan.worker(node), topology.RESULTS, f"^{key}$", ".*"))
    return found


def _command_keys(keys: Iterable[str]) -> str:
    """`^(task\\.submit|...|query\\..+)$`: exactly these commands, and any query."""
    exact = [re.escape(key) for key in keys]
    return "^(" + "|".join([*exact, re.escape(topology.QUERY_PREFIX) + ".+"]) + ")$"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's salted SHA-256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def check_password(password: str, hashed: str) -> bool:
    raw = base64.b64decode(hashed)
    return bool(hashed) and password_hash(password, raw[:4]) == hashed


def definitions(plan: Plan, workers_only: bool = False) -> dict[str, Any]:
    """The JSON that `rabbitmqctl import_definitions` and `load_definitions` read.

    A user without a password gets an empty hash: it cannot log in with a password until
    `rabbitmqctl change_password` gives it one. workers_only leaves out the manager, the
    client and the manager's queues: it adds workers to a broker without touching them.
    """
    vhost = plan.vhost
    users = [plan.worker(node) for node in plan.nodes] if workers_only else plan.users
    result: dict[str, Any] = {
        "users": [
            {
                "name": user,
                "password_hash": password_hash(plan.passwords[user])
                if user in plan.passwords
                else "",
                "hashing_algorithm": HASHING,
                "tags": [],
            }
            for user in users
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": p.user,
                "vhost": vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for p in permissions(plan)
            if p.user in users
        ],
        "topic_permissions": [
            {
                "user": t.user,
                "vhost": vhost,
                "exchange": t.exchange,
                "write": t.write,
                "read": t.read,
            }
            for t in topic_permissions(plan)
            if t.user in users
        ],
    }
    result.update(_topology(plan, workers_only))
    return result


def _topology(plan: Plan, workers_only: bool) -> dict[str, Any]:
    declared = topology.Topology() if workers_only else topology.manager_topology()
    for node in plan.nodes:
        declared = declared + topology.node_topology(node)
    return {
        "exchanges": [
            {
                "name": e.name,
                "vhost": plan.vhost,
                "type": e.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in declared.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": plan.vhost,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": dict(q.arguments),
            }
            for q in _unique(declared.queues)
            if not q.exclusive
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": plan.vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in _unique(declared.bindings)
        ],
    }


def _unique(items: Iterable[Any]) -> list[Any]:
    """Each item once, in order (the nodes' topologies repeat nothing, but be sure)."""
    found: list[Any] = []
    for item in items:
        if item not in found:
            found.append(item)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kube.definitions", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--vhost", default="kube")
    parser.add_argument("--node", action="append", default=[], help="a worker's node name")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="lines USER=PASSWORD; users not listed get no password (set one later)",
    )
    parser.add_argument(
        "--workers-only",
        action="store_true",
        help="only the nodes' users and queues: add workers to a broker set up before",
    )
    args = parser.parse_args(argv)
    passwords: dict[str, str] = {}
    if args.password_file:
        for line in args.password_file.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                user, _, password = line.partition("=")
                passwords[user.strip()] = password.strip()
    plan = Plan(vhost=args.vhost, nodes=tuple(args.node), passwords=passwords)
    json.dump(definitions(plan, workers_only=args.workers_only), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
