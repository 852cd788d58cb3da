"""The `kube` command: parses, calls the client or a service, renders. Nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from kube import (
    cluster_cli,
    completion,
    examples,
    exec_cli,
    jobs_cli,
    kept_logs,
    logs,
    ps,
    render,
    rollout,
    run_wait,
    secrets_cli,
    stack_cli,
    task_flags,
    volume_cli,
    waits,
)
from kube import events as feed
from kube.arguments import seconds as _seconds
from kube.arguments import whole
from kube.client import Client, WaitTimeout, make_spec
from kube.logs import MAX_TAIL, since_flag, tail_problem
from kube.progress import WaitInterrupted, wait, waiting_flags
from kube.specfile import read_spec
from manager.scheduler import DEFAULT_SCHEDULER, SCHEDULERS
from shared import topology
from shared.codec import describe
from shared.errors import (
    DecodeError,
    EngineUnavailable,
    KubeError,
    MessagingError,
    NoManagerError,
    Queued,
    RequestError,
    ResourceLocked,
    SettingsError,
    StoreUnavailable,
    Unanswered,
)
from shared.log_setup import FORMATS as LOG_FORMATS
from shared.log_setup import configure as configure_logs
from shared.messages import LogsQuery
from shared.metrics import MANAGER_PORT, WORKER_PORT
from shared.settings import Settings
from shared.states import TaskState
from shared.units import parse_bytes
from shared.wire import ID_PATTERN, MAX_ID_LENGTH, MAX_REPLICAS, replicas_problem

if TYPE_CHECKING:  # imported where used: a Tab's completion need not load the manager
    from manager.config import ManagerConfig
    from manager.leadership import LeaseTimes
    from manager.retention import Retention

OK = 0
TASK_FAILED = 1
USAGE = 2
NO_MANAGER = 3
REFUSED = 4
BROKER_DOWN = 5
QUEUED = 6  # sent and kept by the broker, but no manager confirmed it: it acts when one starts
CHANGED = 7  # a wait's target was changed by another request (another client's): it ended
BUG = 70  # an error kube did not expect (EX_SOFTWARE of sysexits.h)
TIMED_OUT = 124  # a wait's --wait-timeout elapsed (the work carries on), as timeout(1) exits
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
PIPE_CLOSED = 141  # 128 + SIGPIPE
EXEC_FAILED = exec_cli.EXEC_FAILED  # kube exec could not run the command, or lost it


_count = whole(1)  # a flag that bounds or counts something


MAX_UP_WORKERS = 64
"""Workers `kube up` starts at most: each is a process and a broker connection on one
machine; past a few dozen, a real cluster is the better tool."""


def _workers(text: str) -> int:
    """How many workers `kube up` starts: 1 to MAX_UP_WORKERS."""
    value = _whole(text)
    if not 1 <= value <= MAX_UP_WORKERS:
        raise argparse.ArgumentTypeError(f"{value} is not within 1 to {MAX_UP_WORKERS}")
    return value


def _metrics_port(text: str) -> int:
    """A port to serve /metrics on, 1 to 65535, or 0: none."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1 to 65535, or 0: off)")
    return value


def _name_prefix(text: str) -> str:
    """A prefix that makes valid node names PREFIX-1..PREFIX-64."""
    longest = f"{text}-{MAX_UP_WORKERS}"
    if not re.match(ID_PATTERN, longest):
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot begin a node name (up to {MAX_ID_LENGTH - 3} characters of"
            " A-Z, a-z, 0-9, '_', '.', '-', starting with a letter or digit)"
        )
    return text


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _port(text: str) -> int | dict[str, int]:
    """`80` (the engine picks the host port) or `8080:80` (host port 8080), as Docker's -p;
    each a port number of ASCII digits, 1 to 65535."""
    host, sep, container = text.rpartition(":")
    parts = [container, host] if sep else [container]
    if not all(re.fullmatch("[0-9]+", part) for part in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not CONTAINER_PORT or HOST_PORT:CONTAINER_PORT"
        )
    out = [part for part in parts if not 1 <= int(part) <= 65535]
    if out:
        raise argparse.ArgumentTypeError(f"{text!r}: port {out[0]} is not within 1 to 65535")
    if not sep:
        return int(container)
    return {"container": int(container), "host": int(host)}


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _package_version() -> str:
    try:
        return version("kube")
    except PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag said in one line (its usage can take eight): the line
    names the flag and the problem, and where the usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown flag is said by the command it was given to, so
        that the line points to that command's help (`kube run --help`)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The (sub)command parser the parsed arguments chose, deepest first."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(sub, _Parser):
                    return sub._chosen(parsed)
        return self


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kube",
        description="A container orchestrator on RabbitMQ.",
        epilog=examples.OVERVIEW,
        formatter_class=examples.Formatter,
    )
    parser.add_argument("--version", action="version", version=f"kube {_package_version()}")
    examples.add_global_flags(parser, _seconds)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    manager = sub.add_parser("manager", help="run the manager")
    manager.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="sqlite:///PATH or postgresql://... (default: $KUBE_STORE or a SQLite file)",
    )
    manager.add_argument("--db", type=Path, default=None, help="SQLite file (as sqlite:///PATH)")
    manager.add_argument(
        "--secrets-key-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the key secrets are encrypted with, outside the store (default:"
        " $KUBE_SECRETS_KEY_FILE; none: secret and config commands are refused)",
    )
    manager.add_argument("--name", default=None, help="this manager's name (default: HOSTNAME-PID)")
    manager.add_argument(
        "--lease",
        type=_seconds,
        default=None,
        help="seconds a leader's lease lasts without renewal, 3 to 300 (default 5; renewed"
        " every fifth of it)",
    )
    manager.add_argument(
        "--move-to-vhost",
        action="store_true",
        help="the cluster moved to this broker vhost: record it as the store's (docs/managers.md)",
    )
    manager.add_argument(
        "--scheduler",
        default=None,
        choices=SCHEDULERS,
        help=f"how tasks are placed on nodes (default: {DEFAULT_SCHEDULER})",
    )
    manager.add_argument("--max-tasks-per-node", type=_count, help="cap on tasks per node")
    manager.add_argument(
        "--max-nodes", type=_count, default=None, help="nodes the cluster may have (default: 100)"
    )
    manager.add_argument(
        "--max-replicas",
        type=whole(1, replicas_problem),
        default=None,
        help=f"replicas a service may have (default and at most {MAX_REPLICAS})",
    )
    manager.add_argument(
        "--max-tasks-per-minute",
        type=_count,
        default=None,
        help="tasks one broker user may create a minute (30000)",
    )
    manager.add_argument(
        "--keep-ended", type=_count, default=None, help="ended tasks kept at most (default: 10000)"
    )
    manager.add_argument(
        "--keep-ended-for",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long an ended task is kept (default: 86400, a day)",
    )
    manager.add_argument(
        "--purge-interval", type=_seconds, default=None, metavar="SECONDS", help=argparse.SUPPRESS
    )
    manager.add_argument(
        "--heartbeat-interval",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds between the workers' heartbeats, told to them (default 2)",
    )
    manager.add_argument(
        "--node-down-after",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds of silence after which a node is down (default 6)",
    )
    _logging_flags(manager)
    _observability_flags(manager, MANAGER_PORT)

    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument(
        "--name",
        default=None,
        help="node name (default: the host name, with the machine id if it is a common one)",
    )
    worker.add_argument(
        "--label",
        type=task_flags.node_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of this node, for constraints and spread (repeat)",
    )
    worker.add_argument("--cpus", type=_seconds, help="advertised cpus (default: detected)")
    worker.add_argument("--memory", type=_size, help="advertised memory (default: detected)")
    worker.add_argument("--disk", type=_size, help="advertised disk (default: detected)")
    worker.add_argument(
        "--runtime",
        choices=["docker", "mock"],
        default="docker",
        help="docker, or mock: containers simulated in memory (default docker)",
    )
    worker.add_argument(
        "--files-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where secrets and configs are written for their containers, on a tmpfs"
        " (default: /run/kube if /run is a tmpfs, else /dev/shm/kube)",
    )
    worker.add_argument(
        "--advertise-address",
        metavar="ADDRESS",
        help="IP address or host name where its tasks' ports answer (default: the source"
        " address of the route to the broker)",
    )
    worker.add_argument(
        "--concurrency", type=_count, default=None, help="containers started at once (8)"
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds between heartbeats (default 2)",
    )
    policy = worker.add_argument_group("security policy (default: refuse all of these)")
    policy.add_argument("--policy", type=Path, help="a TOML policy file (see worker/policy.py)")
    policy.add_argument("--allow-privileged", action="store_true", help="privileged containers")
    policy.add_argument(
        "--allow-host-network", action="store_true", help="containers on the host's network"
    )
    policy.add_argument(
        "--allow-host-pid", action="store_true", help="containers in the host's PID namespace"
    )
    policy.add_argument(
        "--allow-mount",
        action="append",
        default=[],
        metavar="HOST_PATH",
        help="bind mounts of this host path or below it (repeat)",
    )
    policy.add_argument(
        "--allow-cap",
        action="append",
        default=[],
        metavar="CAPABILITY",
        help="this added Linux capability (repeat)",
    )
    policy.add_argument(
        "--allow-device",
        action="append",
        default=[],
        metavar="DEVICE",
        help="this host device (repeat)",
    )
    policy.add_argument(
        "--allow-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only images matching this glob, if any is given (repeat)",
    )
    policy.add_argument(
        "--allow-local-registry",
        action="store_true",
        help="pull from registries on loopback or link-local addresses",
    )
    policy.add_argument(
        "--allow-exec",
        action="store_true",
        help="`kube exec` into this node's tasks (an operator's privilege, recorded)",
    )
    _logging_flags(worker)
    _observability_flags(worker, WORKER_PORT)

    _run_parser(sub)
    ps.add_parser(sub)
    inspect = sub.add_parser("inspect", help="show a task and its history")
    inspect.add_argument("id", metavar="TASK", help="a task's id, name, or the start of its id")
    inspect.add_argument(
        "--json", action="store_true", help="the record, history and attempts as JSON"
    )
    nodes = sub.add_parser("nodes", help="list workers")
    nodes.add_argument("--json", action="store_true", help="the node records as JSON")
    managers = sub.add_parser("managers", help="list the managers: which leads, at which epoch")
    managers.add_argument("--json", action="store_true", help="the managers as JSON")
    stop = sub.add_parser("stop", help="stop a task and remove its container, or a service")
    stop.add_argument(
        "id", metavar="TASK|SERVICE", help="a service, or a task's id, name or the start of its id"
    )
    waiting_flags(stop, "until the container stopped and the task ended", 60.0)
    logs = sub.add_parser(
        "logs",
        help="print a task's (or a service's) container output; -f follows it",
        description="The container's stdout on stdout, its stderr on stderr. A service's"
        " lines are prefixed with their task. With -f, lines are shown as they are written,"
        " a restarted task is followed onto its new attempt and a service's new tasks are"
        " picked up, until the task ends (a service: until Ctrl-C). Output a node cannot"
        " give (down, not answering) is said in a line `kube: partial: ...` on stderr.",
    )
    logs.add_argument(
        "id", metavar="TASK|SERVICE", help="a service, or a task's id, name or the start of its id"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="go on as lines are written")
    logs.add_argument(
        "--tail",
        type=whole(0, tail_problem),
        metavar="N",
        help=f"only the last N lines (at most {MAX_TAIL})",
    )
    logs.add_argument(
        "--since",
        type=since_flag,
        metavar="DURATION|TIME",
        help="only lines written after: a duration ago (30s, 5m, 2h, 1d; not 0: -f --tail 0"
        " follows from now on) or an ISO 8601 time (UTC unless it says)",
    )
    logs.add_argument(
        "-t", "--timestamps", action="store_true", help="each line with the time it was written"
    )
    only = logs.add_mutually_exclusive_group()
    only.add_argument("--stdout-only", action="store_true", help="only the container's stdout")
    only.add_argument("--stderr-only", action="store_true", help="only the container's stderr")
    kept_logs.add_flags(logs)
    exec_cli.add_parser(sub)
    rollout.add_restart_parser(sub)
    completion.add_parser(sub)
    feed.add_parser(sub)
    _up_parser(sub)
    cluster_cli.add_parsers(sub)
    jobs_cli.add_parser(sub)
    stack_cli.add_parsers(sub)
    secrets_cli.add_parsers(sub)
    volume_cli.add_parsers(sub)
    examples.finish(parser, _seconds)
    return parser


def _run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="submit a task, a service with --replicas, a job with --schedule (command after --)",
        description="Submit a task (or with --replicas a service, with --schedule a job) and"
        " print its id (a service's or job's name). The flags set the spec's fields, over"
        " those of -f FILE.",
    )
    run.add_argument(
        "container_command",
        nargs="*",
        metavar="-- COMMAND",
        help="the container's command and its arguments, after -- (default: the image's)",
    )
    run.add_argument("-f", "--file", type=Path, help="a TaskSpec as JSON ('-' for stdin)")
    run.add_argument("--id", help="idempotency key (default: generated)")
    run.add_argument("--name", help="the task's (or service's) name")
    run.add_argument(
        "-p",
        "--port",
        type=_port,
        action="append",
        default=None,
        dest="ports",
        metavar="[HOST:]CONTAINER",
        help="publish a container port, on a fixed host port if given (repeat)",
    )
    task_flags.add_field_flags(run)
    jobs_cli.add_schedule_flags(run)
    run.add_argument(
        "--constraint",
        type=task_flags.key_value,
        action="append",
        default=None,
        help="node label KEY=VALUE (repeat; VALUE a,b means any of them)",
    )
    run.add_argument("--spread", metavar="LABEL", help="spread a service's tasks over a label")
    run.add_argument(
        "--wait",
        action="store_true",
        help="wait until running or ended; a task that ends at once shows its output",
    )
    run.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="with --wait: do not show the output of a task that ended",
    )
    run.add_argument(
        "--wait-timeout",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long --wait waits (default 120)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="JSON alone on stdout: {\"id\": ...}; with --wait, the task's record (a service's:"
        ' {"id", "name", "replicas", "running"})',
    )


def _up_parser(sub: Any) -> None:
    up = sub.add_parser("up", help="run a manager and workers here until Ctrl-C")
    up.add_argument(
        "--workers", type=_workers, default=2, help=f"how many workers, 1 to {MAX_UP_WORKERS}"
    )
    up.add_argument(
        "--name-prefix", type=_name_prefix, help="workers are PREFIX-1..N (default: the host name)"
    )
    up.add_argument("--start-broker", action="store_true", help="start RabbitMQ in Docker if none")
    up.add_argument(
        "--broker-image", default=None, metavar="IMAGE", help="the image --start-broker runs"
    )
    up.add_argument("--keep", action="store_true", help="leave containers and state at exit")
    up.add_argument("--db", type=Path, help="the manager's SQLite file (default: throwaway)")
    up.add_argument("--store", metavar="URL", help="the manager's store, e.g. postgresql://...")
    up.add_argument(
        "--managers", type=int, default=1, help="2 or more: a leader, standbys (PostgreSQL --store)"
    )
    up.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        choices=SCHEDULERS,
        help=f"how tasks are placed (default {DEFAULT_SCHEDULER})",
    )
    up.add_argument(
        "--runtime",
        choices=["docker", "mock"],
        default="docker",
        help="the workers' runtime; mock simulates containers (default docker)",
    )
    up.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long the manager and workers may take to be ready (default 60)",
    )
    up.add_argument(
        "--metrics-port",
        type=_metrics_port,
        default=0,
        help="manager's /metrics; workers next (0: off)",
    )
    up.add_argument(
        "--allow-exec",
        action="store_true",
        help="let operators run `kube exec` in the workers' tasks (worker flag --allow-exec)",
    )
    _logging_flags(up)


def _logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the least important log lines shown (default INFO)",
    )


def _observability_flags(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="log lines as text or JSON (default text)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_metrics_port,
        default=port,
        help=f"serve /metrics here (default {port}; 0: off)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    completion.complete(parser)  # exits here when the shell asks for completions
    # `--` ends the options, as in every Unix command: `kube stop -- ID`; what follows it
    # in `kube run` is the container's command
    args = parser.parse_args(_glued_ports(args_list))
    command = _container_command(parser, args, args_list)
    try:
        return _run(args, command)
    except WaitInterrupted as exc:  # the work goes on: say where to follow it
        print(f"kube: {exc}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("kube: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (`kube ps | head`): say nothing more
        return PIPE_CLOSED
    except Exception as exc:  # a bug of kube's: still one line, unless asked for more
        if args.command in SERVICES or os.environ.get("KUBE_DEBUG"):
            raise  # a service's log keeps the traceback, for whoever reads it later
        return _say(
            f"unexpected error, a bug of kube's: {exc.__class__.__name__}: {exc}"
            " (KUBE_DEBUG=1 shows its traceback)",
            BUG,
        )


SERVICES = ("manager", "worker")
"""Commands that run for long, under a supervisor: a crash there keeps its traceback."""


EXAMPLE_AFTER_DASHES = {
    "run": "kube run --image IMAGE -- COMMAND ARGS...",
    "exec": "kube exec TASK -- COMMAND ARGS...",
}


def _container_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: list[str]
) -> list[str]:
    """The container's command of `kube run` (and the command of `kube exec`): the words
    after its first `--`, every one of them; a word before `--` that no option takes is
    refused, not taken for the command."""
    words: list[str] = list(getattr(args, "container_command", None) or [])
    after = given[given.index("--") + 1 :] if "--" in given else []
    if words and words != after:
        extra = words[: len(words) - len(after)] if words[-len(after) :] == after else words
        parser.error(
            f"unrecognized arguments: {' '.join(extra)} (the command goes after --:"
            f" {EXAMPLE_AFTER_DASHES[args.command]})"
        )
    return words


def _glued_ports(args: list[str]) -> list[str]:
    """`-p -1:80` as `--port=-1:80`: argparse takes a value starting with '-' for a flag
    and says only "expected one argument"; glued, `_port` names what is wrong with it.
    Nothing after `--` is touched: it is the container's command."""
    if "--" in args:
        cut = args.index("--")
        return [*_glued_ports(args[:cut]), *args[cut:]]
    out: list[str] = []
    for arg in args:
        if out and out[-1] in ("-p", "--port") and arg.startswith("-") and arg != "-":
            out[-1] = f"--port={arg}"
        else:
            out.append(arg)
    return out


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run(args: argparse.Namespace, command: list[str]) -> int:
    """Run a parsed command; every error kube knows becomes one line and an exit code."""
    try:
        if args.command == "completion":
            return completion.run(args)
        settings = Settings.from_env(amqp_url=args.amqp_url, request_timeout=args.timeout)
        if args.command == "manager":
            return run_manager(args, settings)
        if args.command == "worker":
            return run_worker(args, settings)
        if args.command == "up":
            return run_up(args, settings)
        # a stack file is read before the broker is asked: a bad one is a usage error
        stack = stack_cli.read(args) if args.command in stack_cli.FILE_COMMANDS else None
        if args.command == "logs":
            kept_logs.check_flags(args)  # flags that cannot go together: before asking
        with Client(settings) as client:
            client.notice = lambda text: print(f"kube: {text}", file=sys.stderr)
            if stack is not None:
                return stack_cli.deploy_or_diff(args, client, stack)
            return dispatch(args, command, client)
    except (SettingsError, ValidationError) as exc:  # a flag or an argument that cannot be
        return _failed(args, describe(exc) if isinstance(exc, ValidationError) else str(exc), USAGE)
    except ResourceLocked as exc:
        return _failed(args, str(exc), REFUSED)
    except Queued as exc:
        return _failed(args, queued_line(exc), QUEUED)
    except NoManagerError as exc:
        return _failed(args, str(exc), NO_MANAGER)
    except (RequestError, DecodeError) as exc:
        return _failed(args, str(exc), REFUSED)
    except (MessagingError, StoreUnavailable) as exc:  # a service it needs cannot be reached
        return _failed(args, str(exc), BROKER_DOWN)
    except EngineUnavailable as exc:
        hint = "start it, or point DOCKER_HOST at one (`--runtime mock` runs without)"
        return _failed(args, f"{exc}; {hint}", BROKER_DOWN)
    except WaitTimeout as exc:
        return _failed(args, str(exc), TIMED_OUT)
    except waits.TargetChanged as exc:
        return _failed(args, str(exc), CHANGED)
    except KubeError as exc:
        return _failed(args, str(exc), TASK_FAILED)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _failed(args, f"{exc.filename}: {exc.strerror}", USAGE)


def _failed(args: argparse.Namespace, text: str, code: int) -> int:
    """Say an error and return its code; kube exec's own failures (but a usage error) are
    all EXEC_FAILED, so they stay apart from the command's own codes (kube/exec_cli.py)."""
    if args.command == "exec" and code != USAGE:
        code = EXEC_FAILED
    return _say(text, code)


def _say(text: str, code: int) -> int:
    """Print an error as one line on stderr (a library's message may hold several, e.g. a
    database driver's), and return its exit code."""
    print(f"kube: {' '.join(text.split())}", file=sys.stderr)
    return code


def queued_line(exc: Queued) -> str:
    """What a command no manager answered in time, but the broker kept, means to its user:
    sending it again would do it twice."""
    waited = f"no manager answered within {exc.timeout:g}s"
    if exc.key == topology.SUBMIT_KEY:
        task = exc.subject
        return (
            f"{task} is queued but not confirmed: {waited}; the broker holds the task and it"
            f" will run when a manager starts (do not submit it again). Check with `kube ps`"
            f" or `kube inspect {task}`; cancel it with `kube stop {task}` (queued too, it"
            " stops the task when a manager starts)"
        )
    request = f"{exc.key} {exc.subject}" if exc.subject else exc.key
    return (
        f"{request} is queued but not confirmed: {waited}; the broker holds it and a manager"
        " will act on it when one starts (do not send it again). Check with `kube ps` and"
        " `kube managers`"
    )


def queued_service_line(exc: Queued, name: str, job: bool = False) -> str:
    """`queued_line` for a service (or a job) submitted: it is known by its name."""
    what, check, cancel = (
        ("job", "kube jobs", f"kube jobs rm {name}")
        if job
        else ("service", "kube services", f"kube scale {name} 0")
    )
    return (
        f"{what} {name} is queued but not confirmed: no manager answered within"
        f" {exc.timeout:g}s; the broker holds it and its tasks will run when a manager starts"
        f" (do not submit it again). Check with `{check}`; cancel it with `{cancel}`"
    )


def _constraints(pairs: list[tuple[str, str]] | None) -> dict[str, Any] | None:
    if pairs is None:
        return None
    return {key: value.split(",") if "," in value else value for key, value in pairs}


def dispatch(args: argparse.Namespace, command: list[str], client: Client) -> int:
    if args.command == "run":
        return run_task(args, command, client)
    if args.command == "exec":
        return exec_cli.run(args, command, client)
    if args.command in cluster_cli.COMMANDS:
        return cluster_cli.run(args, client)
    if args.command == jobs_cli.COMMAND:
        jobs_cli.run(args, client)
        return OK
    if args.command == "stack":
        return stack_cli.stacks(args, client)
    if args.command in secrets_cli.COMMANDS:
        return secrets_cli.run(args, client)
    if args.command in volume_cli.COMMANDS:
        return volume_cli.run(args, client)
    if args.command == "ps":
        ps.run(args, client)
    elif args.command == "restart":
        return rollout.restart(args, client)
    elif args.command == "inspect":
        task, events, attempts = client.inspect_attempts(client.task_id(args.id))
        data = {
            **task.model_dump(mode="json"),
            "events": [e.model_dump(mode="json") for e in events],
            "attempts": [a.model_dump(mode="json") for a in attempts],
        }
        _out(args, data, lambda: kept_logs.with_attempts(render.task(task, events), attempts))
    elif args.command == "nodes":
        nodes = client.nodes()
        _out(args, [n.model_dump(mode="json") for n in nodes], lambda: render.nodes(nodes))
    elif args.command == "managers":
        managers = client.managers()
        _out(
            args,
            [m.model_dump(mode="json") for m in managers],
            lambda: render.managers(managers),
        )
    elif args.command == "stop":
        name = stop(client, args.id)
        if not args.detach:
            wait(client, waits.stop_work(name), waits.stopped(client, name), args.wait_timeout)
        print(name)
    elif args.command == "logs":
        # a bad --tail or --attempt is said before anything is asked
        LogsQuery(id=args.id, tail=args.tail, attempt=args.attempt, previous=args.previous)
        target = client.task_id(args.id, services=True)
        is_service = target == args.id and target in {s.name for s in client.services()}
        kept = args.previous or args.attempt is not None
        if kept and is_service:
            raise RequestError(
                f"{args.id} is a service: --previous and --attempt take one of its tasks"
                " (kube ps --service NAME lists them)"
            )
        if kept:  # what the manager kept of an ended attempt, asked for
            found = client.task_logs(target, args.tail, args.attempt, args.previous)
            kept_logs.write(found, stdout=not args.stderr_only, stderr=not args.stdout_only)
            return 0
        options = logs.Options(
            follow=args.follow,
            since=args.since,
            tail=args.tail,
            timestamps=args.timestamps,
            stdout=not args.stderr_only,
            stderr=not args.stdout_only,
        )
        # read once, without times: what the manager kept when the live output cannot be had
        instead = not (args.follow or args.since or args.timestamps)
        logs.show_logs(client, target, is_service, options, kept=instead)
    elif args.command == "events":
        task_id = None if args.task is None else client.task_id(args.task)
        feed.run(client, follow=args.follow, task_id=task_id, as_json=args.json)
    return OK


def stop(client: Client, text: str) -> str:
    """Stop the task or service `kube stop TEXT` means; the name the manager stopped. The
    name lookup and the stop share one deadline, --timeout: with no manager answering,
    the stop is queued (the broker confirms it) without a second wait, and Queued says
    the time waited in all."""
    timeout = client.settings.request_timeout
    deadline = time.monotonic() + timeout
    target = stop_target(client, text)
    try:
        return client.stop(target, timeout=max(0.0, deadline - time.monotonic()))
    except Queued as exc:
        raise Queued(str(exc), exc.key, timeout, exc.subject) from exc


def stop_target(client: Client, text: str) -> str:
    """The task or service `kube stop TEXT` means. With no manager to ask, the text as
    given: the stop then waits in the broker's queue, behind the submit it cancels (the
    advice of a queued `kube run`), for the manager that starts next."""
    try:
        return client.task_id(text, services=True)
    except Unanswered:
        return text


def _out(args: argparse.Namespace, data: Any, text: Any) -> None:
    print(json.dumps(data, indent=2) if args.json else text())


def run_task(args: argparse.Namespace, command: list[str], client: Client) -> int:
    data = read_spec(args.file) if args.file is not None else {}
    flags = {
        "id": args.id,
        "name": args.name,
        "image": args.image,
        "ports": args.ports,
        "env": dict(args.env) if args.env is not None else None,
        "labels": dict(args.label) if args.label is not None else None,
        "cpu": args.cpu,
        "memory": args.memory,
        "disk": args.disk,
        "pull_policy": args.pull_policy,
        "command": command or None,
        "replicas": args.replicas,
        "constraints": _constraints(args.constraint),
        "spread": args.spread,
    }
    data.update({key: value for key, value in flags.items() if value is not None})
    data.update(task_flags.spec_fields(args, data))
    data.update(jobs_cli.schedule_fields(args))
    try:
        spec = make_spec(data)
    except DecodeError as exc:  # checked here, before sending: a usage error (exit 2)
        raise SettingsError(f"not a valid task: {exc.reason}") from exc
    try:
        task_id = client.submit(spec)
    except Queued as exc:
        if spec.replicas is None and spec.schedule is None:
            raise
        return _say(queued_service_line(exc, spec.name, spec.schedule is not None), QUEUED)
    if not args.wait or spec.schedule is not None:  # a job: its runs come at its ticks
        print(json.dumps({"id": task_id}, indent=2) if args.json else task_id)
        return OK
    if not args.json:  # with --json, stdout holds the one JSON document printed below
        print(task_id, flush=True)
    if spec.replicas is not None:
        look = waits.scaled(client, spec.name, spec.replicas)
        wait(client, waits.scale_work(spec.name, spec.replicas), look, args.wait_timeout)
        if args.json:
            print(json.dumps(service_waited(task_id, spec.name, spec.replicas), indent=2))
        else:
            print(f"{spec.name}: {spec.replicas}/{spec.replicas} running")
        return OK
    task, output = run_wait.until_running(client, task_id, args.wait_timeout, not args.detach)
    if args.json:
        data = task.model_dump(mode="json")
        print(json.dumps(data if output is None else {**data, "output": output}, indent=2))
    else:
        if output:
            sys.stdout.write(output if output.endswith("\n") else output + "\n")
        print(render.placement(task))
    return OK if task.state in (TaskState.RUNNING, TaskState.COMPLETED) else TASK_FAILED


def service_waited(task_id: str, name: str, replicas: int) -> dict[str, Any]:
    """What `kube run --replicas N --wait --json` prints once N run (docs/cli.md)."""
    return {"id": task_id, "name": name, "replicas": replicas, "running": replicas}


def _configure_logging(level: str, fmt: str = "text") -> None:
    configure_logs(level, fmt)


def _stop_on_signals(stop: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags given on the command line: the rest keep the config's own defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _retention(args: argparse.Namespace) -> Retention:
    from manager.retention import Retention

    default = Retention()
    return Retention(
        keep=default.keep if args.keep_ended is None else args.keep_ended,
        keep_for=default.keep_for
        if args.keep_ended_for is None
        else timedelta(seconds=args.keep_ended_for),
    )


def _store(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The store's URL, if given: --store, --db (a SQLite file), or $KUBE_STORE."""
    from manager.store.url import check as check_store
    from manager.store.url import sqlite_url

    if args.store is not None and args.db is not None:
        raise SettingsError("give --store or --db, not both (--db PATH is --store sqlite:///PATH)")
    url = sqlite_url(args.db) if args.db is not None else args.store or env.get("KUBE_STORE")
    key = getattr(args, "secrets_key_file", None) or env.get("KUBE_SECRETS_KEY_FILE")
    return ({} if not url else {"store": check_store(url)}) | (
        {"secrets_key_file": Path(key)} if key else {}
    )


def manager_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ManagerConfig:
    """The manager's config from its flags: what is not given keeps ManagerConfig's default."""
    from manager.config import ManagerConfig

    return ManagerConfig(
        retention=_retention(args),
        **_given(args, "scheduler", "heartbeat_interval", "node_down_after", "max_tasks_per_node"),
        **_given(args, "max_nodes", "purge_interval", "max_replicas", "max_tasks_per_minute"),
        **_store(args, os.environ if env is None else env),
    )


def run_manager(args: argparse.Namespace, settings: Settings) -> int:
    from manager.leadership import Identity
    from manager.metrics import serve_metrics
    from manager.succession import Succession

    _configure_logging(args.log_level, args.log_format)
    config = manager_config(args)
    identity = Identity.here(args.name)
    succession = Succession(
        settings, config, identity, lease_times(args.lease), move_to_vhost=args.move_to_vhost
    )
    serve_metrics(args.metrics_port, config.store)
    _stop_on_signals(succession.stop)
    succession.run()
    return OK


MIN_LEASE, MAX_LEASE = 3.0, 300.0
"""Bounds of --lease (seconds): shorter, a renewal every fifth of it races the store's
round trips and the lease flaps; longer, a dead leader leaves the cluster headless for
more than five minutes."""


def lease_times(length: float | None) -> LeaseTimes:
    """The lease's timings from --lease: renewed five times a lease, tried by standbys
    ten times a lease (at most every half second)."""
    from manager.leadership import LeaseTimes

    if length is None:
        return LeaseTimes()
    if not MIN_LEASE <= length <= MAX_LEASE:
        raise SettingsError(
            f"--lease {length:g}: give between {MIN_LEASE:g} and {MAX_LEASE:g} seconds"
        )
    return LeaseTimes(length=length, renew_every=length / 5, standby_every=min(0.5, length / 10))


def run_worker(args: argparse.Namespace, settings: Settings) -> int:

    from worker.address import parse as parse_address
    from worker.config import WorkerConfig
    from worker.metrics import serve_metrics
    from worker.naming import this_host
    from worker.policy import WorkerPolicy
    from worker.runtime.base import Runtime
    from worker.runtime.timed import TimedRuntime
    from worker.service import Worker
    from worker.stats import Capacity, detect_capacity

    _configure_logging(args.log_level, args.log_format)
    name = args.name or this_host()
    detected = detect_capacity()
    capacity = Capacity(
        cpus=args.cpus if args.cpus is not None else detected.cpus,
        memory=args.memory if args.memory is not None else detected.memory,
        disk=args.disk if args.disk is not None else detected.disk,
    )
    flags = WorkerPolicy(
        allow_privileged=args.allow_privileged,
        allow_host_network=args.allow_host_network,
        allow_host_pid=args.allow_host_pid,
        mount_sources=tuple(args.allow_mount),
        capabilities=tuple(args.allow_cap),
        devices=tuple(args.allow_device),
        images=tuple(args.allow_image),
        allow_local_registries=args.allow_local_registry,
        allow_exec=args.allow_exec,
    )
    policy = WorkerPolicy.load(args.policy).merge(flags) if args.policy else flags
    config = WorkerConfig(
        name=name,
        address=None if args.advertise_address is None else parse_address(args.advertise_address),
        labels=dict(args.label),
        capacity=capacity,
        policy=policy,
        **_given(args, "heartbeat_interval", "concurrency", "files_dir"),
    )
    runtime: Runtime
    if args.runtime == "mock":
        from worker.runtime.mock import MockRuntime

        runtime = MockRuntime(name)
    else:
        from worker.runtime.docker import DockerRuntime

        pool = max(16, config.concurrency * 2)
        runtime = DockerRuntime(name, max_pool_size=pool, policy=policy)
    serve_metrics(args.metrics_port, name, runtime)
    runtime = TimedRuntime(runtime)
    worker = Worker(settings, config, runtime)
    _stop_on_signals(worker.bus.stop)
    worker.run()
    return OK


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    import socket

    from kube.localbroker import BROKER_IMAGE
    from kube.up import UpOptions, managers_problem, up

    if args.metrics_port and args.metrics_port + args.workers > 65535:
        raise SettingsError(
            f"--metrics-port {args.metrics_port}: the workers take the next {args.workers}"
            " port(s), past 65535"
        )
    if args.db is not None and not args.db.parent.is_dir():
        raise SettingsError(f"--db {args.db}: no such folder {args.db.parent}")
    # polling for the manager gets unroutable returns, which pika logs as warnings
    logging.getLogger("pika").setLevel(logging.ERROR)
    store = _store(args, {}).get("store") if args.store else None
    if (problem := managers_problem(args.managers, store)) is not None:
        raise SettingsError(problem)
    options = UpOptions(
        managers=args.managers,
        workers=args.workers,
        name_prefix=args.name_prefix or socket.gethostname(),
        start_broker=args.start_broker,
        keep=args.keep,
        db=args.db,
        store=store,
        scheduler=args.scheduler,
        runtime=args.runtime,
        broker_image=args.broker_image or BROKER_IMAGE,
        ready_timeout=args.ready_timeout,
        log_level=args.log_level,
        metrics_port=args.metrics_port,
        allow_exec=args.allow_exec,
    )
    return up(options, settings)


if __name__ == "__main__":
    sys.exit(main())
