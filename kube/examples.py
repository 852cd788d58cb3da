"""An example for every `kube` command, shown at the end of its --help, and the walk over
the parser that puts them there and accepts the global flags after any subcommand."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator

OVERVIEW = """\
examples:
  kube up                                          # a manager and two workers, here
  kube run --name hello --image busybox --wait -- echo hello
  kube ps -a                                       # every task, ended ones too
  kube logs hello                                  # a task by name, id or id's start
  kube COMMAND --help                              # each command's flags and examples"""

EXAMPLES: dict[str, str] = {
    "manager": "kube manager --store sqlite:///var/lib/kube/kube.db\n"
    "kube manager --store postgresql://kube@db/kube --name m1 --lease 10",
    "worker": "kube worker --name node-1 --label zone=a\n"
    "kube worker --runtime mock --cpus 4 --memory 8g   # no containers: a dry run",
    "run": "kube run --name hello --image busybox --wait -- echo hello\n"
    "kube run --name web --image nginx -p 8080:80 --replicas 3 --restart always\n"
    "kube run --name api --image api:1 --env TOKEN --health-http 8080/healthz\n"
    "kube run -f task.json --env DEBUG=1\n"
    "kube run --name backup --image busybox --schedule '0 3 * * *' -- echo backup",
    "ps": "kube ps -a --state failed\nkube ps --service web -q",
    "inspect": "kube inspect web-1a2b3c4d\n"
    "kube inspect hello        # a task's name, or the start of an id",
    "nodes": "kube nodes\nkube nodes --json",
    "managers": "kube managers",
    "stop": "kube stop hello           # a task, by name, id or id's start\n"
    "kube stop web             # a service: all its tasks",
    "logs": "kube logs hello\n"
    "kube logs web-1a2b --tail 20 --timestamps\n"
    "kube logs -f web --since 5m        # a service: every task's lines, prefixed\n"
    "kube logs -f hello --stderr-only\n"
    "kube logs hello --previous         # the kept output of the last ended attempt\n"
    "kube logs hello --attempt 2 --tail 50",
    "exec": "kube exec web -- ls /srv\n"
    "echo hi | kube exec web -- cat      # piped stdin is forwarded\n"
    "kube exec -it web -- sh               # a terminal: exit it to return",
    "events": "kube events --follow\nkube events --task hello --follow --json",
    "up": "kube up\nkube up --workers 3 --start-broker",
    "orphans": "kube orphans remove --all --node node-1\nkube orphans adopt 3f2a1b9c8d7e",
    "orphans remove": "kube orphans remove 3f2a1b9c8d7e\nkube orphans remove --all --node node-1",
    "orphans adopt": "kube orphans adopt 3f2a1b9c8d7e --node node-1",
    "services": "kube services\nkube services --json",
    "jobs": "kube jobs\nkube jobs --json",
    "jobs rm": "kube jobs rm backup",
    "jobs run": "kube jobs run backup      # a run now, beside the schedule",
    "endpoints": "kube endpoints web\ncurl http://$(kube endpoints web | head -1)/",
    "scale": "kube scale web 5          # returns once 5 run\n"
    "kube scale web 5 -d       # returns at once",
    "update": "kube update web --image nginx:1.27\n"
    "kube update web --env LOG_LEVEL=debug --env-rm OLD --memory 256m\n"
    "kube update web -f web.json",
    "restart": "kube restart web           # a service: its tasks replaced one by one\n"
    "kube restart hello        # a task: a new task of the same spec",
    "cordon": "kube cordon node-1",
    "uncordon": "kube uncordon node-1",
    "drain": "kube drain node-1\nkube drain node-1 -d       # returns at once",
    "label": "kube label node-1 zone=a disk=ssd\nkube label node-1 zone-",
    "cap": "kube cap node-1 --cpus 2 --memory 4g\nkube cap node-1 --clear",
    "rm": "kube rm hello web\nkube rm --all-ended\nkube rm --node node-9",
    "deploy": "kube deploy -f docs/examples/stack-web.yaml\n"
    "kube deploy -f docs/examples/stack-web.yaml --name shop2 --prune",
    "diff": "kube diff -f docs/examples/stack-web.yaml\n"
    "kube diff -f docs/examples/stack-web.yaml --json",
    "stack": "kube stack ls\nkube stack ps shop\nkube stack rm shop",
    "stack ls": "kube stack ls\nkube stack ls --json",
    "stack ps": "kube stack ps shop\nkube stack ps shop -a",
    "stack rm": "kube stack rm shop",
    "volume": "kube volume ls\nkube volume rm pgdata",
    "volume ls": "kube volume ls\nkube volume ls --json",
    "volume rm": "kube volume rm pgdata\n"
    "kube volume rm pgdata --force   # its node is down or gone: forget it",
    "completion": 'eval "$(kube completion bash)"     # in ~/.bashrc\n'
    'eval "$(kube completion zsh)"      # in ~/.zshrc',
}


for _kind, _name, _file in (("secret", "db-password", "pw.txt"), ("config", "app", "app.conf")):
    EXAMPLES |= {
        _kind: f"kube {_kind} create {_name} {_file}\nkube {_kind} ls",
        f"{_kind} create": f"kube {_kind} create {_name} {_file}\n"
        f'printf %s "$VALUE" | kube {_kind} create {_name} -',
        f"{_kind} update": f"kube {_kind} update {_name} {_file}   # its services roll",
        f"{_kind} ls": f"kube {_kind} ls\nkube {_kind} ls --json",
        f"{_kind} rm": f"kube {_kind} rm {_name}   # refused while in use",
    }


class Formatter(argparse.HelpFormatter):
    """argparse's help, with the examples (the epilog) kept as written, line by line,
    and the description wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def subcommands(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every subcommand's parser, by its path (`ps`, `orphans remove`), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                named = f"{path} {name}".strip()
                yield named, sub
                yield from subcommands(sub, named)


def finish(parser: argparse.ArgumentParser, seconds: Callable[[str], float]) -> None:
    """Give each subcommand its example, and the global flags after it
    (`kube ps --timeout 5` as `kube --timeout 5 ps`); `seconds` checks --timeout."""
    for path, sub in subcommands(parser):
        example = EXAMPLES.get(path)
        if example is not None and not sub.epilog:
            sub.epilog = "examples:\n" + "\n".join(f"  {line}" for line in example.splitlines())
            sub.formatter_class = Formatter
        add_global_flags(sub, seconds, default=argparse.SUPPRESS)


def add_global_flags(
    parser: argparse.ArgumentParser, seconds: Callable[[str], float], default: object = None
) -> None:
    """--amqp-url and --timeout; after a subcommand their default is SUPPRESS, so that
    one not given there leaves the value given before it."""
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--amqp-url",
        action="append",
        metavar="URL",
        default=default,
        help="broker URL; repeat it, or separate URLs with commas, for the nodes of a"
        " RabbitMQ cluster (default: $KUBE_AMQP_URL or localhost)",
    )
    group.add_argument(
        "--timeout",
        type=seconds,
        default=default,
        metavar="SECONDS",
        help="seconds to wait for the manager's answer",
    )


GLOBAL_FLAGS = ("amqp_url", "timeout")
REFERENCE_WIDTH = 100
"""Columns of the reference in docs/cli.md."""


def reference(sub: argparse.ArgumentParser) -> str:
    """A subcommand's help as docs/cli.md's reference shows it: without the global flags
    (documented once, under Conventions), at REFERENCE_WIDTH columns."""
    hidden = [a for a in sub._actions if a.dest in GLOBAL_FLAGS and a.help != argparse.SUPPRESS]
    shown = {id(a): a.help for a in hidden}
    previous = sub.formatter_class
    for action in hidden:
        action.help = argparse.SUPPRESS
    sub.formatter_class = functools.partial(previous, width=REFERENCE_WIDTH)  # type: ignore[call-arg]
    try:
        return sub.format_help()
    finally:
        sub.formatter_class = previous
        for action in hidden:
            action.help = shown[id(action)]
