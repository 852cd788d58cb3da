"""Flags that set a spec's fields one by one, for `kube run` and `kube update`: the
environment, the restart policy and the health check, as docker run names them.

Each `*_fields` function returns the spec fields the flags give, over those of `base`
(the spec from a file, or the service's current spec), or nothing when no flag is given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from kube.arguments import whole
from shared.errors import SettingsError
from shared.wire import MAX_REPLICAS, node_label_problem, replicas_problem

RESTART_MODES = {"no": "never", "never": "never", "on-failure": "on-failure", "always": "always"}
"""`--restart` values: docker's `no` is the spec's `never`."""


def key_value(text: str) -> tuple[str, str]:
    """`KEY=VALUE`, for labels and constraints."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def node_label(text: str) -> tuple[str, str]:
    """A node's label, `KEY=VALUE`, by Kubernetes' rules (shared/wire.py)."""
    key, value = key_value(text)
    problem = node_label_problem(key, value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return key, value


def env_pair(text: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """`KEY=VALUE`, or `KEY` alone: its value in the caller's environment (docker's -e KEY)."""
    key, sep, value = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE or KEY")
    if sep:
        return key, value
    found = (os.environ if environ is None else environ).get(key)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{key} is not set in this environment (give {key}=VALUE, or export {key})"
        )
    return key, found


def volume_mount(text: str) -> dict[str, Any]:
    """`pgdata:/var/lib/postgresql/data[:ro]`, as a spec's volume (docker run -v's form)."""
    name, _, rest = text.partition(":")
    target, _, mode = rest.partition(":")
    if not name or not target.startswith("/") or mode not in ("", "ro", "rw"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME:TARGET or NAME:TARGET:ro, TARGET an absolute path"
        )
    return {"name": name, "target": target, "read_only": mode == "ro"}


def add_field_flags(parser: argparse.ArgumentParser) -> None:
    """The spec fields `kube run` and `kube update` set one by one."""
    parser.add_argument("--image", help="the container image")
    parser.add_argument(
        "--env",
        type=env_pair,
        action="append",
        metavar="KEY[=VALUE]",
        help="an environment variable; KEY alone takes its value from this environment (repeat)",
    )
    parser.add_argument(
        "--label", type=key_value, action="append", metavar="KEY=VALUE", help="a label (repeat)"
    )
    parser.add_argument("--cpu", type=float, help="cores each task reserves (e.g. 0.5)")
    parser.add_argument("--memory", help="memory each task reserves: bytes, or 64m, 1Gi ...")
    parser.add_argument("--disk", help="disk each task reserves: bytes, or 1g ...")
    parser.add_argument(
        "--pull-policy",
        choices=["always", "if-not-present", "never"],
        help="when the worker pulls the image (default if-not-present)",
    )
    parser.add_argument(
        "--replicas",
        type=whole(0, replicas_problem),
        metavar="N",
        help=f"a service of N tasks (0 to {MAX_REPLICAS})",
    )
    parser.add_argument(
        "--volume",
        type=volume_mount,
        action="append",
        metavar="NAME:TARGET[:ro]",
        help="a named volume kept on its node across attempts (repeat; docs/volumes.md)",
    )
    add_restart_flags(parser)
    add_health_flags(parser)


def add_restart_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("restart policy (spec field `restart`)")
    group.add_argument(
        "--restart",
        choices=sorted(RESTART_MODES),
        help="which ends of its container restart the task: no (never), on-failure (a"
        " non-zero exit, a failed health check, a lost node), always (any end but a stop)",
    )
    group.add_argument(
        "--max-restarts",
        type=whole(0),
        metavar="N",
        help="restarts before the task ends failed (the spec's default: 3)",
    )
    group.add_argument(
        "--unlimited-restarts", action="store_true", help="no limit on restarts (max_restarts null)"
    )
    group.add_argument(
        "--restart-delay",
        type=float,
        metavar="SECONDS",
        help="first delay before a restart, doubling each time up to 300 s (default 1)",
    )


def restart_fields(args: argparse.Namespace, base: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec's `restart` from the flags over `base`'s, or None when no flag is given."""
    if args.max_restarts is not None and args.unlimited_restarts:
        raise SettingsError("give --max-restarts N or --unlimited-restarts, not both")
    given: dict[str, Any] = {}
    if args.restart is not None:
        given["policy"] = RESTART_MODES[args.restart]
    if args.max_restarts is not None:
        given["max_restarts"] = args.max_restarts
    if args.unlimited_restarts:
        given["max_restarts"] = None
    if args.restart_delay is not None:
        given["backoff_seconds"] = args.restart_delay
    if not given:
        return None
    return {**(base.get("restart") or {}), **given}


PROBES = ("health_cmd", "health_http", "health_tcp")
TIMINGS = {
    "health_interval": "interval_seconds",
    "health_timeout": "timeout_seconds",
    "health_retries": "failures",
    "health_start_period": "grace_seconds",
}


def add_health_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("health check (spec field `health_check`)")
    group.add_argument(
        "--health-cmd",
        metavar="COMMAND",
        help="a shell command run in the container; exit 0 is healthy (run with sh -c)",
    )
    group.add_argument(
        "--health-http",
        metavar="PORT[/PATH]",
        help="an HTTP GET of the container's PORT (and PATH, default /); 2xx or 3xx is healthy",
    )
    group.add_argument(
        "--health-tcp", type=int, metavar="PORT", help="a TCP connection to the container's PORT"
    )
    group.add_argument(
        "--health-interval", type=float, metavar="SECONDS", help="between checks (default 10)"
    )
    group.add_argument(
        "--health-timeout", type=float, metavar="SECONDS", help="a check's limit (default 2)"
    )
    group.add_argument(
        "--health-retries",
        type=int,
        metavar="N",
        help="failed checks in a row that make it unhealthy (default 3)",
    )
    group.add_argument(
        "--health-start-period",
        type=float,
        metavar="SECONDS",
        help="failed checks count only after this long (default 0)",
    )
    group.add_argument(
        "--no-health-check", action="store_true", help="remove the spec's health check"
    )


def _probe(args: argparse.Namespace) -> dict[str, Any] | None:
    given = [name for name in PROBES if getattr(args, name) is not None]
    if len(given) > 1:
        flags = " and ".join("--" + name.replace("_", "-") for name in given)
        raise SettingsError(f"give one health check, not {flags}")
    if args.health_cmd is not None:
        return {"exec": ["sh", "-c", args.health_cmd]}
    if args.health_tcp is not None:
        return {"tcp": {"port": args.health_tcp}}
    if args.health_http is not None:
        port, slash, path = args.health_http.partition("/")
        if not port.isdigit():
            raise SettingsError(f"--health-http {args.health_http!r}: give PORT or PORT/PATH")
        return {"http": {"port": int(port), "path": slash + path or "/"}}
    return None


def health_fields(args: argparse.Namespace, base: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec's `health_check` from the flags over `base`'s, None when no flag is given,
    or {} with --no-health-check (the field cleared)."""
    probe = _probe(args)
    timings = {field: getattr(args, flag) for flag, field in TIMINGS.items()}
    timings = {field: value for field, value in timings.items() if value is not None}
    if args.no_health_check:
        if probe is not None or timings:
            raise SettingsError("--no-health-check takes no other --health-* flag")
        return {}
    if probe is None and not timings:
        return None
    current = dict(base.get("health_check") or {})
    if probe is not None:
        current = {k: v for k, v in current.items() if k not in ("http", "tcp", "exec")}
    elif not current:
        raise SettingsError(
            "--health-interval, --health-timeout, --health-retries and --health-start-period"
            " need a check: give --health-cmd, --health-http or --health-tcp"
        )
    return {**current, **(probe or {}), **timings}


def spec_fields(args: argparse.Namespace, base: Mapping[str, Any]) -> dict[str, Any]:
    """The `restart` and `health_check` fields the flags set (health_check None: removed)."""
    out: dict[str, Any] = {}
    restart = restart_fields(args, base)
    if restart is not None:
        out["restart"] = restart
    health = health_fields(args, base)
    if health is not None:
        out["health_check"] = health or None
    if getattr(args, "volume", None):
        out["volumes"] = args.volume  # the whole list: an update replaces it
    return out
