"""The `kube` subcommands for services and nodes: services, endpoints, scale, update, cordon,
uncordon, drain, label, cap, rm (ended tasks and services, down nodes), and orphans
(containers no task of this cluster placed: remove, adopt). Thin like the
rest of the CLI: parse, call the client, render."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kube import render, rollout, waits
from kube.arguments import whole
from kube.client import Client
from kube.progress import wait, waiting_flags
from shared.codec import describe
from shared.errors import RequestError
from shared.models import NodeSettings, Removed
from shared.wire import MAX_REPLICAS, replicas_problem

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
    scale.add_argument(
        "replicas",
        type=whole(0, replicas_problem),
        metavar="N",
        help=f"how many tasks to keep running (0 to {MAX_REPLICAS})",
    )
    waiting_flags(scale, "until N tasks run and the ones beyond have ended", 120.0)
    update = sub.add_parser(
        "update",
        help="roll a service onto a new spec, a task at a time",
        description="Change a service: its current spec with the fields the flags give, or"
        " the spec of -f FILE (the flags over it). Its tasks are replaced one at a time.",
    )
    update.add_argument("name", metavar="SERVICE", help="the service's name")
    update.add_argument("-f", "--file", type=Path, help="the new TaskSpec (JSON)")
    rollout.add_update_flags(update)
    waiting_flags(update, "until every task runs the new spec", 600.0)
    update.set_defaults(usage_error=update.error)
    for verb, text in (("cordon", "no new tasks on a node"), ("uncordon", "allow new tasks")):
        sub.add_parser(verb, help=text).add_argument("node", help="the node's name")
    drain = sub.add_parser("drain", help="cordon a node and move its tasks elsewhere")
    drain.add_argument("node", help="the node's name")
    waiting_flags(drain, "until no task is left running on the node", 300.0)
    # the flag's name before --detach, kept for scripts that use it
    drain.add_argument("--no-wait", action="store_true", dest="detach", help=argparse.SUPPRESS)
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
    elif args.command == "scale" or (args.command == "update" and rollout.replicas_only(args)):
        if args.command == "update":
            rollout.service_named(client, args.name)  # a task's name is said to be one
        client.scale(args.name, args.replicas)
        if not args.detach:
            look = waits.scaled(client, args.name, args.replicas)
            wait(client, waits.scale_work(args.name, args.replicas), look, args.wait_timeout)
        print(f"{args.name} scaled to {args.replicas}" + (" (under way)" if args.detach else ""))
    elif args.command == "update":
        client.update(args.name, rollout.update_spec(args, client))
        if not args.detach:
            look = waits.updated(client, args.name)
            wait(client, waits.update_work(args.name), look, args.wait_timeout)
        print(f"{args.name} updating" if args.detach else f"{args.name} updated")
    elif args.command in ("cordon", "uncordon"):
        known_node(client, args.node)
        getattr(client, args.command)(args.node)
        print(f"{args.node} {args.command}ed")
    elif args.command == "drain":
        known_node(client, args.node)
        client.drain(args.node)
        if not args.detach:
            look = waits.drained(client, args.node)
            wait(client, waits.drain_work(args.node), look, args.wait_timeout)
        print(f"{args.node} draining" if args.detach else f"{args.node} drained")
    elif args.command == "rm":
        remove(args, client)
    elif args.command == "label":
        settings = node_labels(args)
        known_node(client, args.node)
        client.set_node(settings)
        print(f"{args.node} labelled")
    elif args.command == "cap":
        caps = node_caps(args)
        known_node(client, args.node)
        client.set_node(caps)
        print(f"{args.node} capped" if not args.clear else f"{args.node} uncapped")
    elif args.command == "orphans":
        return orphans(args, client)
    return 0


def known_node(client: Client, name: str) -> None:
    """RequestError (exit 4) for a node the manager does not know, before a node command
    is sent; with no manager, NoManagerError (exit 3), nothing sent: a node command is not
    left queued, since only a manager can say whether the node exists, and its refusal
    would reach no one."""
    names = [node.name for node in client.nodes()]
    if name not in names:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise RequestError(
            f"unknown node {name!r} (the nodes: {shown or 'none'}; see `kube nodes`)"
        )


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
