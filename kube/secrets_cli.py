"""`kube secret` and `kube config`: create, update, ls, rm. A value is read from a file or
stdin and sealed for the manager's key before it leaves (kube/client.py); no command ever
prints one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kube import render
from kube.client import Client
from shared.errors import SettingsError
from shared.files import MAX_VALUE_BYTES, FileKind

COMMANDS = tuple(kind.value for kind in FileKind)

HELP = {
    FileKind.SECRET: "secrets: encrypted, mounted at /run/secrets/NAME (docs/secrets.md)",
    FileKind.CONFIG: "configs: files mounted where a spec says (docs/secrets.md)",
}


def add_parsers(sub: Any) -> None:
    for kind in FileKind:
        parser = sub.add_parser(kind.value, help=HELP[kind])
        verbs = parser.add_subparsers(dest="verb", required=True)
        says = {
            "create": f"make a {kind.value}",
            "update": f"a new version of a {kind.value}; the services that use it roll",
        }
        for verb, text in says.items():
            write = verbs.add_parser(verb, help=text)
            write.add_argument("name", metavar="NAME", help=f"the {kind.value}'s name")
            write.add_argument(
                "file", metavar="FILE", nargs="?", default="-", help="the value; - or none: stdin"
            )
        ls = verbs.add_parser("ls", help=f"list {kind.value}s (never their values)")
        ls.add_argument("--json", action="store_true", help="the records as JSON")
        rm = verbs.add_parser("rm", help=f"remove a {kind.value} (refused while in use)")
        rm.add_argument("name", metavar="NAME", help=f"the {kind.value}'s name")


def _value(source: str) -> bytes:
    """The value from a file or stdin; SettingsError (exit 2) if it is over the limit."""
    if source == "-":
        value = sys.stdin.buffer.read(MAX_VALUE_BYTES + 1)
    else:
        with Path(source).open("rb") as file:
            value = file.read(MAX_VALUE_BYTES + 1)
    if len(value) > MAX_VALUE_BYTES:
        where = "stdin" if source == "-" else source
        raise SettingsError(f"{where}: the value is over {MAX_VALUE_BYTES} bytes (500 KiB)")
    return value


def run(args: argparse.Namespace, client: Client) -> int:
    kind = FileKind(args.command)
    if args.verb in ("create", "update"):
        client.write_file(kind, args.name, _value(args.file), create=args.verb == "create")
        print(args.name)
    elif args.verb == "rm":
        client.remove_file(kind, args.name)
        print(args.name)
    else:
        records = client.files(kind)
        if args.json:
            print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        else:
            rows = [
                (
                    r.name,
                    str(r.version),
                    str(r.size),
                    render.age(r.created_at),
                    render.age(r.updated_at),
                )
                for r in records
            ]
            print(render.table(("NAME", "VERSION", "SIZE", "CREATED", "UPDATED"), rows))
    return 0
