"""`kube ps`: the tasks, as docker ps lists containers: ended ones only with `-a`,
filtered by state, node or service, `-q` for the ids alone. Filters apply to `--json`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kube import examples, render
from kube.client import Client
from shared.models import TaskRecord

EXAMPLES = """\
examples:
  kube ps                         # tasks not ended
  kube ps -a                      # every task, ended ones too
  kube ps --state failed          # failed tasks (a state shows ended ones without -a)
  kube ps --service web --node n1 # web's tasks on node n1
  kube stop $(kube ps -q --service web)
  kube ps --orphans               # containers no task of this cluster placed"""


def add_parser(sub: Any) -> None:
    ps = sub.add_parser(
        "ps",
        help="list tasks (not ended ones unless -a)",
        description="List tasks. Each filter may be repeated: a task shows if it matches"
        " any value of each filter given.",
        epilog=EXAMPLES,
        formatter_class=examples.Formatter,
    )
    ps.add_argument("-a", "--all", action="store_true", help="show ended tasks too")
    ps.add_argument(
        "--state",
        action="append",
        choices=render.SHOWN_STATES,
        metavar="STATE",
        help="only tasks in this state, as shown: " + ", ".join(render.SHOWN_STATES) + " (repeat)",
    )
    ps.add_argument("--node", action="append", metavar="NODE", help="only tasks on NODE (repeat)")
    ps.add_argument(
        "--service", action="append", metavar="NAME", help="only the tasks of service NAME (repeat)"
    )
    output = ps.add_mutually_exclusive_group()  # ids alone, or whole records: not both
    output.add_argument("-q", "--quiet", action="store_true", help="print the task ids only")
    output.add_argument("--json", action="store_true", help="print the task records as JSON")
    ps.add_argument(
        "--orphans",
        action="store_true",
        help="list the containers no task of this cluster placed (docs/orphans.md)",
    )


@dataclass(frozen=True)
class Filter:
    """Which tasks `kube ps` shows; an empty tuple does not filter."""

    ended: bool = False
    states: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filter:
        return cls(
            ended=args.all or bool(args.state),
            states=tuple(args.state or ()),
            nodes=tuple(args.node or ()),
            services=tuple(args.service or ()),
        )

    def keeps(self, task: TaskRecord) -> bool:
        return (
            (self.ended or not task.state.terminal)
            and (not self.states or render.state(task) in self.states)
            and (not self.nodes or task.node in self.nodes)
            and (not self.services or task.service in self.services)
        )

    def apply(self, tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
        return [t for t in tasks if self.keeps(t)]


def run(args: argparse.Namespace, client: Client) -> None:
    if args.orphans:
        found = client.orphans()
        if args.json:
            print(json.dumps(found.model_dump(mode="json"), indent=2))
        elif args.quiet:
            print("\n".join(o.container_id for o in found.orphans))
        else:
            print(render.orphans(found))
        return
    tasks = Filter.from_args(args).apply(client.list())
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
    elif args.quiet:
        if tasks:
            print("\n".join(t.id for t in tasks))
    else:
        print(render.tasks(tasks))
