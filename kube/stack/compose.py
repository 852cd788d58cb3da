"""The Compose file format mapped to TaskSpecs, pure: one function per key group.

A stack file read by kube/stack/loader.py (YAML, interpolated, checked against the Compose
JSON Schema) becomes a `Stack`: each service a TaskSpec named STACK_SERVICE, labelled
`kube.stack=STACK`, with the services it depends on. Every key the Compose specification
allows and kube does not support is refused, naming it; none is ignored (docs/stacks.md
lists them). Keys starting with `x-` are Compose's extension fields, there to be ignored.

Named volumes map to TaskSpec.volumes; a service with an `x-kube:` block holding a
`schedule` is a scheduled job (docs/jobs.md), the one extension field kube reads.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from kube.stack.loader import StackFile, StackFileError
from shared.codec import describe, encode_value
from shared.models import TaskSpec
from shared.units import parse_bytes
from shared.wire import ID_PATTERN, MAX_ID_LENGTH, STACK_LABEL

Fields = dict[str, Any]
EnvFiles = Callable[[Path], dict[str, str]]

TOP_KEYS = frozenset({"services", "name", "version", "volumes", "secrets", "configs"})
"""Top-level keys kube reads (`version` is obsolete in Compose itself and has no effect)."""


@dataclass(frozen=True)
class Dependency:
    """A service this one starts after: once created, or once healthy."""

    service: str
    healthy: bool


@dataclass(frozen=True)
class StackService:
    """One service of the file: its key in the file, its spec, what it waits for."""

    key: str
    spec: TaskSpec
    depends_on: tuple[Dependency, ...] = ()

    @property
    def job(self) -> bool:
        """A scheduled job (`x-kube: {schedule}`), not a service."""
        return self.spec.schedule is not None


@dataclass(frozen=True)
class Stack:
    """A stack file's services, in an order that deploys each after its dependencies."""

    name: str
    services: tuple[StackService, ...]

    def service(self, key: str) -> StackService:
        return next(s for s in self.services if s.key == key)


@dataclass(frozen=True)
class Context:
    """What a key group's mapping needs beside the service's keys."""

    document: StackFile
    service: str
    environ: Mapping[str, str]
    env_files: EnvFiles

    def error(self, problem: str, *path: object) -> StackFileError:
        return self.document.error(problem, "services", self.service, *path)

    def unsupported(self, *path: object) -> StackFileError:
        return self.error("not supported by kube (docs/stacks.md lists what is)", *path)

    def only(self, block: Mapping[str, Any], keys: set[str], *path: object) -> None:
        """Refuse a key of `block` other than `keys` (and x- extensions)."""
        for key in block:
            if key not in keys and not str(key).startswith("x-"):
                raise self.unsupported(*path, key)


def stack_name(document: StackFile, given: str | None) -> str:
    """--name, else the file's `name:`; a name kube can prefix service names with."""
    name = given or document.data.get("name")
    if not name:
        raise StackFileError(f"{document.path}: give the stack a name: --name, or `name:` in it")
    if not re.match(ID_PATTERN, name) or len(name) > MAX_ID_LENGTH - 2:
        raise StackFileError(
            f"{document.path}: {name!r} cannot name a stack (A-Z, a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit)"
        )
    return str(name)


def stack(
    document: StackFile,
    name: str | None,
    environ: Mapping[str, str],
    env_files: EnvFiles,
) -> Stack:
    """The stack the file describes."""
    for key in document.data:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            raise document.error("not supported by kube (docs/stacks.md lists what is)", key)
    top(document)
    named = stack_name(document, name)
    declared = document.data.get("services") or {}
    if not declared:
        raise document.error("the file has no services", "services")
    found = {}
    for key, body in declared.items():
        context = Context(document, key, environ, env_files)
        found[key] = StackService(key, spec(named, body or {}, context), depends_on(body, context))
    return Stack(named, tuple(found[key] for key in order(document, found)))


SERVICE_KEYS: dict[str, Callable[[Mapping[str, Any], Context], Fields]] = {}
"""Each supported service key (or group of keys) and the function mapping it."""


def maps(*keys: str) -> Callable[[Callable[[Mapping[str, Any], Context], Fields]], Any]:
    def register(
        function: Callable[[Mapping[str, Any], Context], Fields],
    ) -> Callable[[Mapping[str, Any], Context], Fields]:
        for key in keys:
            SERVICE_KEYS[key] = function
        return function

    return register


def spec(stack_name: str, body: Mapping[str, Any], context: Context) -> TaskSpec:
    """The TaskSpec of one service."""
    context.only(body, {*SERVICE_KEYS, "depends_on"})
    if "image" not in body:
        raise context.error("kube needs an image (it builds none)", "image")
    fields: Fields = {"name": f"{stack_name}_{context.service}", "replicas": 1}
    for function in dict.fromkeys(SERVICE_KEYS[key] for key in body if key in SERVICE_KEYS):
        fields.update(function(body, context))
    for volume in fields.get("volumes", ()):  # STACK_VOLUME, as Compose and Swarm name them
        volume["name"] = f"{stack_name}_{volume['name']}"
    if "schedule" in fields:  # a job: its runs are tasks, it keeps no replicas
        if "replicas" in (body.get("deploy") or {}):
            raise context.error(
                "a job (x-kube.schedule) has no replicas: each tick starts one run",
                "deploy",
                "replicas",
            )
        del fields["replicas"]
    fields["labels"] = {**fields.get("labels", {}), STACK_LABEL: stack_name}
    if not re.match(ID_PATTERN, fields["name"]):
        raise context.error(f"{fields['name']!r} is too long or not a name for a service")
    try:
        return TaskSpec.model_validate_json(encode_value(fields), strict=True)
    except ValidationError as exc:
        raise context.error(f"not a valid kube service: {describe(exc)}") from None


def _int(value: Any, context: Context, *path: object, least: int = 0) -> int:
    """A whole number given as one or as a string (after interpolation)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise context.error(f"{value!r} is not a whole number", *path) from None
    if number < least:
        raise context.error(f"{number} is less than {least}", *path)
    return number


DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def duration(value: Any, context: Context, *path: object) -> float:
    """Seconds of a Compose duration: `1m30s`, `10s`, `500ms`."""
    text = str(value).strip()
    if not text or DURATION.sub("", text):
        raise context.error(f"{value!r} is not a duration (e.g. 10s, 1m30s, 500ms)", *path)
    return sum(float(n) * UNIT_SECONDS[unit] for n, unit in DURATION.findall(text))


def _words(value: Any) -> tuple[str, ...]:
    """A command as Compose takes it: a list, or a string split as a shell would."""
    return tuple(str(v) for v in value) if isinstance(value, list) else tuple(shlex.split(value))


@maps("image")
def image(body: Mapping[str, Any], context: Context) -> Fields:
    return {"image": body["image"]}


PULL_POLICIES = {"always": "always", "never": "never", "missing": "if-not-present"}


@maps("pull_policy")
def pull_policy(body: Mapping[str, Any], context: Context) -> Fields:
    given = body["pull_policy"]
    if given in ("if_not_present",):
        given = "missing"
    if given not in PULL_POLICIES:
        raise context.error(f"{given!r}: kube takes always, never or missing", "pull_policy")
    return {"pull_policy": PULL_POLICIES[given]}


@maps("command")
def command(body: Mapping[str, Any], context: Context) -> Fields:
    value = body["command"]
    return {} if value is None else {"command": _words(value)}


@maps("entrypoint")
def entrypoint(body: Mapping[str, Any], context: Context) -> Fields:
    """Replaces the image's ENTRYPOINT; the command follows it."""
    value = body["entrypoint"]
    return {} if value is None else {"entrypoint": _words(value)}


@maps("labels")
def labels(body: Mapping[str, Any], context: Context) -> Fields:
    found = _pairs(body["labels"], context, "labels")
    reserved = [key for key in found if key.startswith("kube.")]
    if reserved:
        raise context.error("keys starting with 'kube.' are kube's own", "labels", reserved[0])
    return {"labels": {k: "" if v is None else v for k, v in found.items()}}


def _pairs(value: Any, context: Context, *path: object) -> dict[str, str | None]:
    """A Compose `list_or_dict`: {K: V} or ["K=V", "K"]; a K alone has the value None."""
    if isinstance(value, list):
        return {
            k: (v if sep else None) for k, sep, v in (str(item).partition("=") for item in value)
        }
    return {str(k): None if v is None else _scalar(v) for k, v in (value or {}).items()}


def _scalar(value: Any) -> str:
    """A YAML scalar as Compose writes it into a string (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@maps("environment", "env_file")
def environment(body: Mapping[str, Any], context: Context) -> Fields:
    """env_file entries in order, then environment over them. A variable given without a
    value takes the value it has where kube runs, and is left out if it has none."""
    env: dict[str, str] = {}
    files = body.get("env_file")
    for at, entry in enumerate([files] if isinstance(files, str) else files or []):
        item = {"path": entry} if isinstance(entry, str) else entry
        context.only(item, {"path", "required"}, "env_file", at)
        path = context.document.path.parent / item["path"]
        if not path.is_file() and item.get("required", True) is False:
            continue
        if not path.is_file():
            raise context.error(f"{path}: no such file", "env_file", at)
        env.update(context.env_files(path))
    for key, value in _pairs(body.get("environment"), context, "environment").items():
        if value is None:
            value = context.environ.get(key)
            if value is None:
                continue
        env[key] = value
    return {"env": env} if env else {}


PORT = re.compile(r"^(?:(\d+):)?(\d+)(?:/(tcp|udp|sctp))?$")


@maps("ports")
def ports(body: Mapping[str, Any], context: Context) -> Fields:
    return {"ports": tuple(_port(p, context, at) for at, p in enumerate(body["ports"] or []))}


def _port(item: Any, context: Context, at: int) -> int | Fields:
    """`80`, `"8080:80"`, `"8080:80/tcp"` or the long form {target, published, protocol,
    mode: host}. kube publishes on the node that runs a task (Swarm's host mode): it has no
    routing mesh, so `mode: ingress` is refused, as are UDP, port ranges and host IPs."""
    if isinstance(item, dict):
        context.only(item, {"target", "published", "protocol", "mode"}, "ports", at)
        if item.get("mode", "host") != "host":
            raise context.error(
                "kube publishes on the task's node (mode: host); it has no ingress mesh",
                "ports",
                at,
                "mode",
            )
        container, host, protocol = item.get("target"), item.get("published"), item.get("protocol")
    else:
        match = PORT.match(str(item))
        if match is None:
            raise context.error(
                f"{item!r}: kube takes CONTAINER or HOST:CONTAINER (no host IP, no range)",
                "ports",
                at,
            )
        host, container, protocol = match.groups()
    if (protocol or "tcp") != "tcp":
        raise context.error(f"{protocol}: kube publishes TCP ports only", "ports", at)
    target = _int(container, context, "ports", at, least=1)
    if host is None:
        return target
    return {"container": target, "host": _int(host, context, "ports", at, least=1)}


@maps("healthcheck")
def healthcheck(body: Mapping[str, Any], context: Context) -> Fields:
    """Compose's healthcheck as kube's exec probe, with Docker's defaults (30s interval,
    30s timeout, 3 retries); `disable: true` or test NONE: none."""
    check = body["healthcheck"] or {}
    path = ("healthcheck",)
    context.only(
        check, {"test", "interval", "timeout", "retries", "start_period", "disable"}, *path
    )
    test = check.get("test")
    if check.get("disable") or test == ["NONE"]:
        return {"health_check": None}
    if test is None:
        raise context.error("kube needs a test (it reads no HEALTHCHECK of the image)", *path)
    if isinstance(test, str):
        probe: tuple[str, ...] = ("/bin/sh", "-c", test)
    elif test and test[0] == "CMD" and len(test) > 1:
        probe = tuple(str(word) for word in test[1:])
    elif test and test[0] == "CMD-SHELL" and len(test) == 2:
        probe = ("/bin/sh", "-c", str(test[1]))
    else:
        raise context.error(
            'give a string, ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]', *path, "test"
        )
    out: Fields = {
        "exec": probe,
        "interval_seconds": duration(check.get("interval", "30s"), context, *path, "interval"),
        "timeout_seconds": duration(check.get("timeout", "30s"), context, *path, "timeout"),
        "failures": _int(check.get("retries", 3), context, *path, "retries", least=1),
    }
    if "start_period" in check:
        out["grace_seconds"] = duration(check["start_period"], context, *path, "start_period")
    return {"health_check": out}


@maps("deploy")
def deploy(body: Mapping[str, Any], context: Context) -> Fields:
    block = body["deploy"] or {}
    keys = {"mode", "replicas", "resources", "placement", "update_config", "restart_policy"}
    context.only(block, keys, "deploy")
    if block.get("mode", "replicated") != "replicated":
        raise context.error("kube runs replicated services only", "deploy", "mode")
    out: Fields = {}
    if "replicas" in block:
        out["replicas"] = _int(block["replicas"], context, "deploy", "replicas")
    for key, function in (
        ("resources", resources),
        ("placement", placement),
        ("update_config", update_config),
        ("restart_policy", restart_policy),
    ):
        if key in block:
            out.update(function(block[key] or {}, context))
    return out


def resources(block: Mapping[str, Any], context: Context) -> Fields:
    """limits or reservations of cpus and memory: kube both reserves and enforces one value
    of each, so when both are given they must agree."""
    path = ("deploy", "resources")
    context.only(block, {"limits", "reservations"}, *path)
    out: Fields = {}
    for kind in ("reservations", "limits"):
        part = block.get(kind) or {}
        context.only(part, {"cpus", "memory"}, *path, kind)
        for key, field in (("cpus", "cpu"), ("memory", "memory")):
            if key not in part:
                continue
            value = _amount(part[key], key, context, *path, kind, key)
            if field in out and out[field] != value:
                raise context.error(
                    f"kube reserves and enforces one {key} value: give limits and"
                    " reservations the same, or one of them",
                    *path,
                    kind,
                    key,
                )
            out[field] = value
    return out


def _amount(value: Any, key: str, context: Context, *path: object) -> float | int:
    try:
        return float(value) if key == "cpus" else parse_bytes(str(value).lower().rstrip("b") or "0")
    except ValueError:
        raise context.error(
            f"{value!r} is not a {'number' if key == 'cpus' else 'size'}", *path
        ) from None


CONSTRAINT = re.compile(r"^node\.labels\.(\S+?)\s*(==|!=)\s*(.+)$")


def placement(block: Mapping[str, Any], context: Context) -> Fields:
    """`node.labels.KEY==VALUE` / `!=` constraints; a preference `spread: node.labels.KEY`."""
    path = ("deploy", "placement")
    context.only(block, {"constraints", "preferences"}, *path)
    rules = []
    for at, text in enumerate(block.get("constraints") or []):
        match = CONSTRAINT.match(str(text).strip())
        if match is None:
            raise context.error(
                f"{text!r}: kube places by node labels only: node.labels.KEY==VALUE or !=",
                *path,
                "constraints",
                at,
            )
        key, op, value = match.groups()
        rules.append({"key": key, "op": op, "values": [value.strip()]})
    out: Fields = {"constraints": rules} if rules else {}
    preferences = block.get("preferences") or []
    for at, preference in enumerate(preferences):
        spread = preference.get("spread", "") if isinstance(preference, dict) else ""
        if (
            len(preferences) > 1
            or set(preference) != {"spread"}
            or not spread.startswith("node.labels.")
        ):
            raise context.error(
                "kube takes one preference: spread: node.labels.KEY", *path, "preferences", at
            )
        out["spread"] = spread.removeprefix("node.labels.")
    return out


def update_config(block: Mapping[str, Any], context: Context) -> Fields:
    """kube rolls one task at a time and pauses on a failure (docs/services.md): the
    settings that say so are taken, any other is refused."""
    path = ("deploy", "update_config")
    context.only(block, {"parallelism", "failure_action"}, *path)
    if "parallelism" in block and _int(block["parallelism"], context, *path, "parallelism") != 1:
        raise context.error(
            "kube updates one task at a time (parallelism: 1)", *path, "parallelism"
        )
    if block.get("failure_action", "pause") != "pause":
        raise context.error("kube pauses an update that fails (failure_action: pause)", *path)
    return {}


RESTART_CONDITIONS = {"none": "never", "on-failure": "on-failure", "any": "always"}


def restart_policy(block: Mapping[str, Any], context: Context) -> Fields:
    """condition, delay (the first backoff), max_attempts (0 or absent: no limit, as Swarm)."""
    path = ("deploy", "restart_policy")
    context.only(block, {"condition", "delay", "max_attempts"}, *path)
    condition = block.get("condition", "any")
    if condition not in RESTART_CONDITIONS:
        raise context.error(f"{condition!r}: give none, on-failure or any", *path, "condition")
    attempts = _int(block.get("max_attempts", 0), context, *path, "max_attempts")
    out: Fields = {"policy": RESTART_CONDITIONS[condition], "max_restarts": attempts or None}
    if "delay" in block:
        out["backoff_seconds"] = duration(block["delay"], context, *path, "delay")
    return {"restart": out}


JOB_KEYS = ("schedule", "timezone", "concurrency", "catch_up", "keep_runs")


@maps("x-kube")
def extension(body: Mapping[str, Any], context: Context) -> Fields:
    """`x-kube: {schedule, timezone, concurrency, catch_up, keep_runs}`: the service is a
    scheduled job (docs/jobs.md), as `kube run --schedule`; Compose itself ignores it."""
    block = body["x-kube"] or {}
    if not isinstance(block, dict):
        raise context.error("give a mapping (schedule, timezone, ...)", "x-kube")
    for key in block:
        if key not in JOB_KEYS:
            raise context.error(f"kube reads {', '.join(JOB_KEYS)} here", "x-kube", key)
    if block and "schedule" not in block:
        raise context.error("a job needs a schedule (a cron expression)", "x-kube")
    out: Fields = {key: block[key] for key in JOB_KEYS if key in block}
    for key in ("catch_up", "keep_runs"):
        if key in out:
            out[key] = _int(out[key], context, "x-kube", key)
    for key in ("schedule", "timezone", "concurrency"):
        if key in out:
            out[key] = str(out[key])
    return out


def depends_on(body: Mapping[str, Any] | None, context: Context) -> tuple[Dependency, ...]:
    """`[a, b]` (started) or {a: {condition: service_started | service_healthy}}."""
    given = (body or {}).get("depends_on") or {}
    if isinstance(given, list):
        return tuple(Dependency(str(name), healthy=False) for name in given)
    out = []
    for name, how in given.items():
        how = how or {}
        context.only(how, {"condition", "required"}, "depends_on", name)
        condition = how.get("condition", "service_started")
        if condition not in ("service_started", "service_healthy"):
            raise context.error(
                f"{condition}: kube waits for service_started or service_healthy",
                "depends_on",
                name,
                "condition",
            )
        if how.get("required", True) is not True:
            raise context.unsupported("depends_on", name, "required")
        out.append(Dependency(str(name), healthy=condition == "service_healthy"))
    return tuple(out)


def order(document: StackFile, found: Mapping[str, StackService]) -> list[str]:
    """The services' keys, each after those it depends on (in file order otherwise); a
    dependency on a service not in the file, or on one without a health check for
    service_healthy, or a cycle, is refused."""
    for key, service in found.items():
        for need in service.depends_on:
            at = ("services", key, "depends_on", need.service)
            if need.service not in found:
                raise document.error(f"no service {need.service!r} in the file", *at)
            if found[need.service].job:
                raise document.error(f"{need.service} is a job: nothing waits for its runs", *at)
            if need.healthy and found[need.service].spec.health_check is None:
                raise document.error(f"service_healthy, but {need.service} has no healthcheck", *at)
    done: list[str] = []
    visiting: list[str] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            cycle = [*visiting[visiting.index(key) :], key]
            raise document.error(f"a cycle: {' -> '.join(cycle)}", "services", key, "depends_on")
        visiting.append(key)
        for need in found[key].depends_on:
            visit(need.service)
        visiting.pop()
        done.append(key)

    for key in found:
        visit(key)
    return done


# ----- Volumes, secrets, configs ----------------------------------------------------------
# Named volumes map to TaskSpec.volumes (docs/volumes.md), secrets and configs to
# shared/files.py's SecretRef and ConfigRef. Top-level `volumes:` declares plain named
# volumes (the node's engine makes them on first use); top-level `secrets:` and `configs:`
# take `external: true` entries only: kube's come from `kube secret create` / `kube config
# create`, not from the stack file.


@maps("volumes")
def volumes(body: Mapping[str, Any], context: Context) -> Fields:
    """Named volumes (declared at the top level) and bind mounts (`./data:/data:ro`, a path
    relative to the file's folder); the worker allows a bind mount's path or refuses it."""
    named, binds = [], []
    declared = context.document.data.get("volumes") or {}
    for at, item in enumerate(body["volumes"] or []):
        source, target, read_only, kind = _volume(item, context, at)
        if kind == "bind":
            root = context.document.path.parent
            absolute = (
                str(PurePosixPath(root.resolve() / source))
                if not source.startswith("/")
                else source
            )
            binds.append({"source": absolute, "target": target, "read_only": read_only})
            continue
        if source not in declared:
            raise context.error(
                f"volume {source!r} is not declared under the top-level volumes", "volumes", at
            )
        named.append({"name": source, "target": target, "read_only": read_only})
    out: Fields = {"volumes": tuple(named)} if named else {}
    return {**out, "mounts": tuple(binds)} if binds else out


def _volume(item: Any, context: Context, at: int) -> tuple[str, str, bool, str]:
    """(source, target, read_only, volume|bind) of a short or long volume entry."""
    path = ("volumes", at)
    if isinstance(item, dict):
        context.only(item, {"type", "source", "target", "read_only"}, *path)
        kind = item.get("type", "volume")
        if kind not in ("volume", "bind") or not item.get("source"):
            raise context.error("kube takes a named volume or a bind mount with a source", *path)
        return str(item["source"]), str(item["target"]), bool(item.get("read_only")), kind
    parts = str(item).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise context.error(
            f"{item!r}: kube takes SOURCE:TARGET[:ro|rw] (an anonymous volume has no name)", *path
        )
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    if source.startswith("~"):
        raise context.error(f"{item!r}: give the bind mount's path without ~", *path)
    return source, target, len(parts) == 3 and parts[2] == "ro", kind


@maps("secrets")
def secrets(body: Mapping[str, Any], context: Context) -> Fields:
    out = []
    for at, item in enumerate(body["secrets"] or []):
        name, target = _reference(item, context, "secrets", at)
        out.append({"name": name} if target is None else {"name": name, "target": target})
    return {"secrets": tuple(out)}


@maps("configs")
def configs(body: Mapping[str, Any], context: Context) -> Fields:
    """A config's target defaults to /NAME, as in Compose."""
    out = []
    for at, item in enumerate(body["configs"] or []):
        name, target = _reference(item, context, "configs", at)
        out.append({"name": name, "target": target or f"/{name}"})
    return {"configs": tuple(out)}


def _reference(item: Any, context: Context, kind: str, at: int) -> tuple[str, str | None]:
    """(name, target) of a service's secret or config: `NAME` or {source, target}."""
    declared = context.document.data.get(kind) or {}
    if isinstance(item, dict):
        context.only(item, {"source", "target"}, kind, at)
        name, target = str(item["source"]), item.get("target")
    else:
        name, target = str(item), None
    if name not in declared:
        raise context.error(f"{name!r} is not declared under the top-level {kind}", kind, at)
    return name, None if target is None else str(target)


def top(document: StackFile) -> None:
    """The top-level volumes, secrets and configs: plain named volumes (kube's engine
    creates them on the node), and secrets and configs that exist in kube already."""
    for name, body in (document.data.get("volumes") or {}).items():
        for key in body or {}:
            if not str(key).startswith("x-"):
                raise document.error(
                    "not supported by kube (a plain named volume only: the node's"
                    " engine makes it with its default driver on first use, docs/volumes.md)",
                    "volumes",
                    name,
                    key,
                )
    for kind in ("secrets", "configs"):
        for name, body in (document.data.get(kind) or {}).items():
            if set(body or {}) - {"external"} or not (body or {}).get("external"):
                raise document.error(
                    f"kube takes `external: true` {kind} (create them with `kube"
                    f" {kind[:-1]} create`)",
                    kind,
                    name,
                )
