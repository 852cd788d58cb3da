"""`kube volume ls` and `kube volume rm NAME [--force]`: the named volumes tasks keep their
data on (docs/volumes.md). Thin like the rest of the CLI: parse, call the client, render."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kube import render
from kube.client import Client
from shared.volumes import VolumeRecord

COMMANDS = ("volume",)


def add_parsers(sub: Any) -> None:
    volume = sub.add_parser("volume", help="list or remove the named volumes tasks keep data on")
    verbs = volume.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="list volumes, with their node and the tasks using them")
    ls.add_argument("--json", action="store_true", help="the volume records as JSON")
    rm = verbs.add_parser(
        "rm",
        help="remove a volume and its data from its node (refused while a task uses it)",
        description="kube volume rm NAME [--force]. The volume's node removes it from its"
        " engine. Refused while a task that has not ended uses it, and while its node is"
        " down or gone: --force then forgets it (the data stays on that engine), and also"
        " lets the tasks that wait for it start anew elsewhere.",
    )
    rm.add_argument("name", metavar="NAME", help="the volume's name")
    rm.add_argument(
        "--force", action="store_true", help="forget it even if its node is down or gone"
    )


def run(args: argparse.Namespace, client: Client) -> int:
    if args.verb == "ls":
        found = client.volumes()
        if args.json:
            print(json.dumps([v.model_dump(mode="json") for v in found], indent=2))
        else:
            print(table(found))
    else:
        print(f"removed volume {client.remove_volume(args.name, args.force)}")
    return 0


def table(volumes: list[VolumeRecord]) -> str:
    """NAME, NODE, AGE, USED BY (task ids, or -)."""
    rows = [
        [v.name, v.node, render.age(v.created_at), ", ".join(v.used_by) or "-"] for v in volumes
    ]
    return render.table(["NAME", "NODE", "AGE", "USED BY"], rows)
