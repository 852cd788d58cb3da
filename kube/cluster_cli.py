"""The `kube` subcommands for services and nodes: services, scale, update, cordon,
uncordon, drain, and rm (ended tasks and services, down nodes). Thin like the rest of the
CLI: parse, call the client, render."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from kube import render
from kube.client import Client, WaitTimeout, make_spec
from shared.errors import DecodeError
from shared.models import Removed, TaskRecord
from shared.states import TaskState

COMMANDS = ("services", "scale", "update", "cordon", "uncordon", "drain", "rm")
PLACED = (TaskState.SCHEDULED, TaskState.RUNNING)


def add_parsers(sub: Any) -> None:
    services = sub.add_parser("services", help="list services")
    services.add_argument("--json", action="store_true")
    scale = sub.add_parser("scale", help="keep N tasks of a service running")
    scale.add_argument("name")
    scale.add_argument("replicas", type=int)
    update = sub.add_parser("update", help="roll a service onto a new spec, a task at a time")
    update.add_argument("name")
    update.add_argument("-f", "--file", type=Path, required=True, help="the new TaskSpec (JSON)")
    for verb, text in (("cordon", "no new tasks on a node"), ("uncordon", "allow new tasks")):
        sub.add_parser(verb, help=text).add_argument("node")
    drain = sub.add_parser("drain", help="cordon a node and move its tasks elsewhere")
    drain.add_argument("node")
    drain.add_argument("--no-wait", action="store_true", help="return once the drain started")
    drain.add_argument("--wait-timeout", type=float, default=300.0)
    rm = sub.add_parser(
        "rm",
        help="remove ended tasks, stopped services or down nodes from the lists",
        description="kube rm ID|SERVICE...  |  kube rm --all-ended  |  kube rm --node NODE...",
    )
    rm.add_argument("names", nargs="*", metavar="NAME", help="task ids or service names")
    rm.add_argument("--all-ended", action="store_true", help="every ended task and service")
    rm.add_argument("--node", action="store_true", help="the NAMEs are down nodes")
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(usage_error=rm.error)


def run(args: argparse.Namespace, client: Client) -> int:
    if args.command == "services":
        found = client.services()
        if args.json:
            print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        else:
            print(render.services(found, client.list()))
    elif args.command == "scale":
        client.scale(args.name, args.replicas)
        print(f"{args.name} scaled to {args.replicas}")
    elif args.command == "update":
        try:
            data = json.loads(args.file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DecodeError(f"{args.file}: {exc}") from exc
        client.update(args.name, make_spec({"name": args.name, **data}))
        print(f"{args.name} updating")
    elif args.command in ("cordon", "uncordon"):
        getattr(client, args.command)(args.node)
        print(f"{args.node} {args.command}ed")
    elif args.command == "drain":
        client.drain(args.node)
        if not args.no_wait:
            wait_drained(client, args.node, args.wait_timeout)
        print(f"{args.node} drained" if not args.no_wait else f"{args.node} draining")
    elif args.command == "rm":
        remove(args, client)
    return 0


def remove(args: argparse.Namespace, client: Client) -> None:
    """`kube rm`: one request for the names (all removed or none), or one per node."""
    if args.all_ended == bool(args.names):
        args.usage_error("give the NAMEs to remove, or --all-ended")
    if args.node and args.all_ended:
        args.usage_error("--node takes NAMEs of down nodes, not --all-ended")
    if args.node:
        nodes: tuple[str, ...] = ()
        for name in dict.fromkeys(args.names):  # shown as they go: a refusal stops the rest
            one = client.remove_node(name)
            nodes += one.nodes
            if not args.json:
                show_removed(one)
        if args.json:
            print(json.dumps(Removed(nodes=nodes).model_dump(mode="json"), indent=2))
        return
    removed = client.remove_ended() if args.all_ended else client.remove(args.names)
    if args.json:
        print(json.dumps(removed.model_dump(mode="json"), indent=2))
    else:
        show_removed(removed)


def show_removed(removed: Removed) -> None:
    """`removed task web-1a2b3c4d`, one line for each thing removed."""
    for kind, names in (
        ("task", removed.tasks),
        ("service", removed.services),
        ("node", removed.nodes),
    ):
        for name in names:
            print(f"removed {kind} {name}")


def holding(node: str, tasks: list[TaskRecord]) -> list[TaskRecord]:
    """Tasks that still have an attempt on the node."""
    return [
        t
        for t in tasks
        if (t.node == node and t.state in PLACED)
        or (t.draining is not None and t.draining.node == node and not t.state.terminal)
    ]


def wait_drained(client: Client, node: str, timeout: float) -> None:
    """Show progress until the node holds no task; woken by task events, not a poll loop."""
    events = client.watch(["task.*"], timeout=timeout)
    deadline = time.monotonic() + timeout
    left = holding(node, client.list())
    shown = -1
    while left:
        if len(left) != shown:
            shown = len(left)
            print(f"  {node}: {shown} task(s) to move", file=sys.stderr, flush=True)
        if time.monotonic() > deadline:
            pending = ", ".join(f"{t.id} ({t.error or t.state.value})" for t in left[:5])
            raise WaitTimeout(
                f"{node} still holds {len(left)} task(s) after {timeout:g}s: {pending}"
            )
        if next(events, None) is None:
            continue
        left = holding(node, client.list())


def wait_service(client: Client, name: str, replicas: int, timeout: float) -> int:
    """Wait until the service has `replicas` running tasks; return how many run."""
    events = client.watch(["task.*"], timeout=timeout)

    def running() -> int:
        return sum(
            1
            for t in client.list()
            if t.service == name and t.state == TaskState.RUNNING and t.desired_state == "running"
        )

    count = running()
    while count < replicas:
        if next(events, None) is None:
            raise WaitTimeout(
                f"service {name} has {count}/{replicas} tasks running after {timeout:g}s"
            )
        count = running()
    return count
