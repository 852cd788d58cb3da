"""The `kube` subcommands for services and nodes: services, endpoints, scale, update, cordon,
uncordon, drain, label, cap, rm (ended tasks and services, down nodes), and orphans
(containers no task of this cluster placed: remove, adopt). Thin like the
rest of the CLI: parse, call the client, render."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kube import render, rollout
from kube.client import Client, WaitTimeout
from shared.codec import describe
from shared.errors import KubeError
from shared.models import NodeSettings, Removed, TaskRecord
from shared.states import TaskState

COMMANDS = (
    "services",
    "endpoints",
    "scale",
    "update",
    "cordon",
    "uncordon",
    "drain",
    "rm",
    "label",
    "cap",
    "orphans",
)
PLACED = (TaskState.SCHEDULED, TaskState.RUNNING)


def add_parsers(sub: Any) -> None:
    orphans = sub.add_parser(
        "orphans", help="remove or adopt containers no task of this cluster placed"
    )
    verbs = orphans.add_subparsers(dest="verb", required=True)
    rm = verbs.add_parser("remove", help="stop and remove orphan containers")
    rm.add_argument("id", nargs="?", help="a container id (or prefix), task id or name")
    rm.add_argument("--all", action="store_true", help="every orphan (on --node if given)")
    rm.add_argument("--node", help="only on this node")
    rm.add_argument("--cluster", help="only those carrying this cluster id (an old cluster's)")
    rm.set_defaults(usage_error=rm.error)
    adopt = verbs.add_parser("adopt", help="make an orphan container a task of this cluster")
    adopt.add_argument("id", help="a container id (or prefix), task id or name")
    adopt.add_argument("--node", help="on this node")
    services = sub.add_parser("services", help="list services")
    services.add_argument("--json", action="store_true", help="the service records as JSON")
    endpoints = sub.add_parser(
        "endpoints", help="where a service's serving tasks answer (host:port, one a line)"
    )
    endpoints.add_argument("name", metavar="NAME", help="a service's name, or a task's id")
    endpoints.add_argument("--json", action="store_true", help="the endpoints as JSON")
    scale = sub.add_parser("scale", help="keep N tasks of a service running")
    scale.add_argument("name", metavar="SERVICE", help="the service's name")
    scale.add_argument("replicas", type=int, metavar="N", help="how many tasks to keep running")
    update = sub.add_parser(
        "update",
        help="roll a service onto a new spec, a task at a time",
        description="Change a service: its current spec with the fields the flags give, or"
        " the spec of -f FILE (the flags over it). Its tasks are replaced one at a time.",
    )
    update.add_argument("name", metavar="SERVICE", help="the service's name")
    update.add_argument("-f", "--file", type=Path, help="the new TaskSpec (JSON)")
    rollout.add_update_flags(update)
    update.set_defaults(usage_error=update.error)
    for verb, text in (("cordon", "no new tasks on a node"), ("uncordon", "allow new tasks")):
        sub.add_parser(verb, help=text).add_argument("node", help="the node's name")
    drain = sub.add_parser("drain", help="cordon a node and move its tasks elsewhere")
    drain.add_argument("node", help="the node's name")
    drain.add_argument("--no-wait", action="store_true", help="return once the drain started")
    drain.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for its tasks to move (default 300)",
    )
    label = sub.add_parser(
        "label",
        help="set labels on a node that its worker cannot change (an operator's act)",
        description="kube label NODE key=value... key-...  (key- removes the operator's label)",
    )
    label.add_argument("node", help="the node's name")
    label.add_argument(
        "labels", nargs="+", metavar="key=value|key-", help="set a label, or remove it (key-)"
    )
    label.set_defaults(usage_error=label.error)
    cap = sub.add_parser(
        "cap",
        help="cap the capacity a node's worker may claim (an operator's act)",
        description="kube cap NODE [--cpus N] [--memory SIZE] [--disk SIZE]  |  kube cap NODE"
        " --clear",
    )
    cap.add_argument("node", help="the node's name")
    cap.add_argument("--cpus", type=float, help="cpus its worker may claim at most")
    cap.add_argument("--memory", help="bytes, or 8g, 512Mi ...")
    cap.add_argument("--disk", help="bytes, or 100g ...")
    cap.add_argument("--clear", action="store_true", help="remove the node's caps")
    cap.set_defaults(usage_error=cap.error)
    rm = sub.add_parser(
        "rm",
        help="remove ended tasks, stopped services or down nodes from the lists",
        description="kube rm ID|SERVICE...  |  kube rm --all-ended  |  kube rm --node NODE...",
    )
    rm.add_argument("names", nargs="*", metavar="NAME", help="task ids or service names")
    rm.add_argument("--all-ended", action="store_true", help="every ended task and service")
    rm.add_argument("--node", action="store_true", help="the NAMEs are down nodes")
    rm.add_argument("--json", action="store_true", help="what was removed, as JSON")
    rm.set_defaults(usage_error=rm.error)


def run(args: argparse.Namespace, client: Client) -> int:
    if args.command == "services":
        found = client.services()
        if args.json:
            print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        else:
            print(render.services(found, client.list()))
    elif args.command == "endpoints":
        where = client.endpoints(args.name)
        if args.json:
            print(json.dumps(where.model_dump(mode="json"), indent=2))
        else:
            print(render.endpoints(where), file=sys.stdout if where.endpoints else sys.stderr)
    elif args.command == "scale":
        client.scale(args.name, args.replicas)
        print(f"{args.name} scaled to {args.replicas}")
    elif args.command == "update":
        client.update(args.name, rollout.update_spec(args, client))
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
    elif args.command == "label":
        client.set_node(node_labels(args))
        print(f"{args.node} labelled")
    elif args.command == "cap":
        client.set_node(node_caps(args))
        print(f"{args.node} capped" if not args.clear else f"{args.node} uncapped")
    elif args.command == "orphans":
        return orphans(args, client)
    return 0


def orphans(args: argparse.Namespace, client: Client) -> int:
    """`kube orphans remove ID|--all [--node N]`, `kube orphans adopt ID [--node N]`."""
    if args.verb == "adopt":
        print(client.adopt_orphan(args.id, args.node))
        return 0
    if (args.id is None) == (not args.all):
        args.usage_error("give an orphan's id, or --all")
    asked = client.remove_orphans(args.id, args.node, args.cluster)
    for orphan in asked.orphans:
        print(f"{orphan.container_id[:12]} ({orphan.task_id} on {orphan.node}): removing")
    if asked.left_out:
        # A heartbeat lists at most 50 orphans a node: the rest were not asked for.
        print(
            f"kube: {asked.left_out} more orphan containers were not listed by their nodes"
            " and not removed; run this again once these are gone",
            file=sys.stderr,
        )
        return 1
    if not asked.orphans:
        print("no orphan containers to remove")
    return 0


def node_labels(args: argparse.Namespace) -> NodeSettings:
    """`key=value` sets an operator's label, `key-` removes it."""
    labels: dict[str, str | None] = {}
    for item in args.labels:
        if item.endswith("-") and "=" not in item:
            labels[item[:-1]] = None
        elif "=" in item:
            key, _, value = item.partition("=")
            labels[key] = value
        else:
            args.usage_error(f"{item!r}: give key=value to set a label, or key- to remove it")
    return settings(args, {"name": args.node, "labels": labels})


def node_caps(args: argparse.Namespace) -> NodeSettings:
    caps = {k: getattr(args, k) for k in ("cpus", "memory", "disk") if getattr(args, k) is not None}
    if args.clear == bool(caps):
        args.usage_error("give --cpus, --memory or --disk, or --clear")
    return settings(args, {"name": args.node, "clear_caps": args.clear, **caps})


def settings(args: argparse.Namespace, fields: dict[str, Any]) -> NodeSettings:
    try:
        return NodeSettings.model_validate(fields)
    except ValidationError as exc:
        args.usage_error(describe(exc))
        raise  # usage_error exits


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
    if args.all_ended:
        removed = client.remove_ended()
    else:
        removed = client.remove(client.task_ids(args.names, services=True))
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


class ServiceCannotRun(KubeError):
    """A service's tasks cannot run until someone acts: their image cannot be pulled."""


def wait_service(client: Client, name: str, replicas: int, timeout: float) -> int:
    """Wait until the service has `replicas` running tasks; return how many run.

    A task whose image cannot be pulled ends the wait at once (ServiceCannotRun): it only
    tries again after a backoff of minutes, with the same answer until someone acts."""
    events = client.watch(["task.*"], timeout=timeout)

    def running() -> int:
        live = [
            t
            for t in client.list()
            if t.service == name and t.desired_state == "running" and not t.state.terminal
        ]
        stuck = next((t for t in live if t.image_problem is not None), None)
        if stuck is not None:
            raise ServiceCannotRun(
                f"service {name} cannot run: {stuck.error}; its tasks try again after a"
                f" backoff (see `kube inspect {stuck.id}`, `kube services`)"
            )
        return sum(1 for t in live if t.state == TaskState.RUNNING)

    count = running()
    while count < replicas:
        if next(events, None) is None:
            raise WaitTimeout(
                f"service {name} has {count}/{replicas} tasks running after {timeout:g}s"
            )
        count = running()
    return count
