"""What the fuzzer sends: a valid body for each routing key, drawn from its committed JSON
Schema, and the ways of breaking one.

A `Sent` message is classified by what the manager's own decoder (`shared.codec.decode`,
with the adapter its handler uses) says of the body, not by how it was made: a mutation
may happen to leave a body valid (a dropped field that has a default), and a body drawn
from the schema may break a rule the schema cannot state (a heartbeat's part < parts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from pydantic import TypeAdapter

from manager.commands import NODE, SCALE, SPEC, STOP, UPDATE, VOLUME
from manager.queries import LIST, LOGS, TASK
from manager.server import RESULT
from shared.codec import decode
from shared.errors import DecodeError
from shared.models import MAX_BODY_BYTES, MAX_SPEC_BYTES
from tests.fuzz.schema_strategies import from_schema, load

COMMANDS = "kube.commands"
RESULTS = "kube.results"

CAPS = {"replicas": 3, "limit": 50, "tail": 100}
"""Valid values that would only cost time: services of 3 tasks at most, short pages."""


@dataclass(frozen=True)
class Kind:
    """One routing key's message: its exchange, the schema it is drawn from and the
    adapter its handler decodes it with."""

    exchange: str
    key: str  # for results, without the node: result.update
    schema: str
    adapter: TypeAdapter[Any]
    max_bytes: int = MAX_BODY_BYTES
    variant: str | None = None  # a $defs entry of the schema (result -> LogsReply)

    def strategy(self) -> st.SearchStrategy[Any]:
        schema = load(self.schema)
        if self.variant is not None:
            schema = {"$ref": f"#/$defs/{self.variant}", "$defs": schema["$defs"]}
        return from_schema(schema, CAPS)

    def routing_key(self, node: str) -> str:
        return f"{self.key}.{node}" if self.exchange == RESULTS else self.key


KINDS = [
    Kind(COMMANDS, "task.submit", "task-spec", SPEC, MAX_SPEC_BYTES),
    Kind(COMMANDS, "task.stop", "stop-request", STOP),
    Kind(COMMANDS, "service.scale", "scale-request", SCALE),
    Kind(COMMANDS, "service.update", "update-request", UPDATE, MAX_SPEC_BYTES),
    Kind(COMMANDS, "node.cordon", "node-request", NODE),
    Kind(COMMANDS, "node.uncordon", "node-request", NODE),
    Kind(COMMANDS, "node.drain", "node-request", NODE),
    Kind(COMMANDS, "volume.remove", "volume-request", VOLUME),
    Kind(COMMANDS, "query.volumes", "list-query", LIST),
    Kind(COMMANDS, "query.task", "task-query", TASK),
    Kind(COMMANDS, "query.tasks", "list-query", LIST),
    Kind(COMMANDS, "query.nodes", "list-query", LIST),
    Kind(COMMANDS, "query.services", "list-query", LIST),
    Kind(COMMANDS, "query.logs", "logs-query", LOGS),
    Kind(RESULTS, "result.update", "result", RESULT, variant="TaskUpdate"),
    Kind(RESULTS, "result.heartbeat", "result", RESULT, variant="Heartbeat"),
    Kind(RESULTS, "result.logs", "result", RESULT, variant="LogsReply"),
]
BY_KEY = {kind.key: kind for kind in KINDS}

MODEL_ONLY_RULES = (
    "of a heartbeat in",  # part < parts
    "give exactly one of http, tcp, exec",
    "takes no values",
    "needs at least one value",
    "takes exactly one value",
    "each container port may be listed once",
    "each host port may be listed once",
    "each volume may be listed once",
    "each volume target may be listed once",
    "a service with volumes runs at most 1 replica",
    "may not contain '..'",  # a volume's or a secret's target
    "is neither an IP address nor a host name",  # an advertised address
    "is not a valid IP address",
    "are reserved",  # label keys starting with kube.
    "less than or equal to 9223372036854775807",  # a size written "10000000000G"
    "a schedule has 5 fields",  # a job's cron expression (shared/cron.py)
    "is not a cron expression",
    "unknown time zone",
    "not both",  # a schedule and replicas
)
"""What the models check beyond their JSON Schema: a body drawn from the schema may be
refused for these, and only these, reasons."""


def refusal(kind: Kind, body: bytes) -> str | None:
    """Why the manager's decoder refuses this body for this kind (None: it accepts it)."""
    if kind.adapter is LIST and not body.strip():
        return None  # an empty list query is the first page
    try:
        decode(kind.adapter, body, max_bytes=kind.max_bytes)
    except DecodeError as exc:
        return exc.reason
    return None


# -- mutations -------------------------------------------------------------------------
# Each takes the valid value (a dict) and a draw function, and returns the body's bytes.

Draw = Callable[[st.SearchStrategy[Any]], Any]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(2**64), str(-(2**63) - 1),
               "-1", "0", "1e308", "0.5", "-0.0", "123456789012345678901234567890"]  # fmt: skip
BAD_VALUES: list[Any] = [None, True, "", "x", "12", [], {}, [1, 2], {"a": 1}, 3.5, -7]
FAR_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-11-27T12:00:00",  # naive
    "2026-11-27",
    "not a time",
    "2026-13-45T25:61:61Z",
    "20261127T120000Z",
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON value, the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()  # fmt: skip
    for key, inner in items:
        found.append((*prefix, key))
        found.extend(_paths(inner, (*prefix, key)))
    return found


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


def pick(draw: Draw, options: list[Any]) -> Any:
    """One of options, drawn so that the draw is the same whatever their number: the
    cluster's state shapes a message, and hypothesis requires that the same choices
    always make the same draws."""
    return options[draw(st.integers(0, 2**16)) % len(options)]


def _pick_path(value: Any, draw: Draw) -> tuple[Any, ...] | None:
    paths = _paths(value)
    return pick(draw, paths) if paths else None


MARK = "\u2063fuzz-raw\u2063"  # replaced by raw JSON text after dumping


def _raw(value: Any, path: tuple[Any, ...] | None, text: str) -> bytes:
    """The value with the one at path written as the given raw JSON text (NaN, 1e999)."""
    if path is None:
        return text.encode()
    return json.dumps(_set(value, path, MARK)).replace(f'"{MARK}"', text).encode()


def wrong_type(value: Any, draw: Draw) -> bytes:
    path = _pick_path(value, draw)
    new = draw(st.sampled_from(BAD_VALUES))
    return json.dumps(new if path is None else _set(value, path, new)).encode()


def bad_number(value: Any, draw: Draw) -> bytes:
    return _raw(value, _pick_path(value, draw), draw(st.sampled_from(BAD_NUMBERS)))


def long_string(value: Any, draw: Draw) -> bytes:
    size = draw(st.sampled_from([300, 70_000, MAX_SPEC_BYTES - 200, MAX_BODY_BYTES + 10]))
    path = _pick_path(value, draw)
    text = draw(st.sampled_from(["a", "é", "\u0000", "/", " "])) * size
    return json.dumps(text if path is None else _set(value, path, text)).encode()


def invalid_utf8(value: Any, draw: Draw) -> bytes:
    body = json.dumps(value).encode()
    where = pick(draw, list(range(len(body) + 1)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
    return body[:where] + junk + body[where:]


def duplicate_key(value: Any, draw: Draw) -> bytes:
    if not isinstance(value, dict) or not value:
        return b'{"a": 1, "a": 2}'
    key = pick(draw, sorted(value))
    again = json.dumps({key: draw(st.sampled_from(BAD_VALUES))})[1:-1]
    return json.dumps(value)[:-1].encode() + b", " + again.encode() + b"}"


def deep_nesting(value: Any, draw: Draw) -> bytes:
    depth = draw(st.sampled_from([100, 1_000, 100_000]))
    nested = "[" * depth + "]" * depth
    if draw(st.booleans()):
        nested = '{"a":' * depth + "1" + "}" * depth
    return _raw(value, _pick_path(value, draw), nested)


def missing_field(value: Any, draw: Draw) -> bytes:
    path = _pick_path(value, draw)
    if path is None:
        return b"{}"
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(copy).encode()


def unknown_field(value: Any, draw: Draw) -> bytes:
    name = draw(st.sampled_from(["extra", "__proto__", "user_id", "kind", "", "node "]))
    if isinstance(value, dict):
        return json.dumps({**value, name: draw(st.sampled_from(BAD_VALUES))}).encode()
    return json.dumps({name: value}).encode()


def bad_time(value: Any, draw: Draw) -> bytes:
    times = [p for p in _paths(value) if p[-1] in ("at", "expires", "created_at", "updated_at")]
    path = pick(draw, times) if times else ("at",)
    base = value if isinstance(value, dict) else {}
    return json.dumps(_set(base, path, draw(st.sampled_from(FAR_TIMES)))).encode()


def not_json(value: Any, draw: Draw) -> bytes:
    return draw(
        st.sampled_from([b"", b"null", b"[]", b"{", b"\x00", b"true", b"1", b'"x"', b"{}{}"])
        | st.binary(max_size=64)
    )


MUTATIONS: dict[str, Callable[[Any, Draw], bytes]] = {
    "wrong type": wrong_type,
    "bad number": bad_number,
    "long string": long_string,
    "invalid UTF-8": invalid_utf8,
    "duplicate key": duplicate_key,
    "deep nesting": deep_nesting,
    "missing field": missing_field,
    "unknown field": unknown_field,
    "bad time": bad_time,
    "not JSON": not_json,
}


@dataclass
class Sent:
    """One message the fuzzer published, and what it expects of it."""

    id: str
    exchange: str
    routing_key: str
    body: bytes
    how: str  # "valid", or the mutations applied
    refused: str | None  # the decoder's reason, None when the body is valid for its key
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.refused is None

    def describe(self) -> str:
        body = self.body[:200]
        return f"{self.id} {self.exchange}/{self.routing_key} [{self.how}] {body!r}"


def finite(value: Any) -> bool:
    """No float in the value is NaN or infinite (json.dumps would write them bare)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def fresh_time() -> str:
    return datetime.now(UTC).isoformat()


def stale_time() -> str:
    return (datetime.now(UTC) - timedelta(days=400)).isoformat()
