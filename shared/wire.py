"""The building blocks of every wire model: the base class and the constrained types."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from shared.units import SIZE_PATTERN, parse_bytes

MAX_BODY_BYTES = 1024 * 1024
"""Largest message body kube accepts (1 MiB); anything larger is dead-lettered unread."""

MAX_SPEC_BYTES = MAX_BODY_BYTES - 64 * 1024
"""Largest body of a submit or update (960 KiB): what kube accepts it must also dispatch
and publish, and the dispatch, the task record and the service record quote the spec
with up to 64 KiB of their own (ids, times, two texts of MAX_TEXT)."""

MAX_ID_LENGTH = 63
"""Longest task id or name, in characters (a DNS label's limit, as Kubernetes uses)."""

ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}$"
"""Task ids and names end up in container names, so they keep to Docker's alphabet."""

MAX_INT64 = 2**63 - 1
"""Every integer on the wire fits a signed 64-bit column (SQLite, PostgreSQL) and the engine."""

MAX_TEXT = 16 * 1024
"""Longest free text a message carries (an error, a health check's result, a detail): the
records that quote it must still fit in one message."""

MAX_LABELS = 64
"""Labels a node or a task may carry."""

MAX_PORTS = 256
"""Ports one task may publish: a spec lists at most this many, and a worker's report
of the host ports it got carries as many."""

MAX_CPUS = 4096.0
"""The most cores a node may report (the largest machines today have a few hundred)."""

TaskId = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(pattern=ID_PATTERN)]
Int64 = Annotated[int, Field(ge=-MAX_INT64 - 1, le=MAX_INT64)]
Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
Attempt = Annotated[int, Field(ge=1, le=MAX_INT64, description="1 for a task's first placement")]
Epoch = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_INT64,
        description="the sending manager's lease epoch (0: a manager from before epochs)",
    ),
]


def clip(text: str) -> str:
    """Free text cut to MAX_TEXT characters, the cut marked: a long error never makes the
    message or the record that quotes it invalid."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 20] + " [... cut by kube]"


Text = Annotated[str, AfterValidator(clip)]
ContainerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Timestamp = Annotated[AwareDatetime, Field(description="an ISO 8601 time with its UTC offset")]
LabelKey = Annotated[str, Field(min_length=1, max_length=253)]
Hostname = Annotated[str, Field(min_length=1, max_length=253)]
Pid = Annotated[int, Field(ge=1, le=2**31 - 1)]
ClusterId = Annotated[str, Field(pattern=r"^[a-f0-9]{8,32}$")]
LabelValue = Annotated[str, Field(max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_bytes),
    Field(ge=0, le=MAX_INT64),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_INT64},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "description": "bytes, or a string with a unit: '64m', '1g', '512Mi' (powers of 1024)",
        }
    ),
]


STACK_LABEL = "kube.stack"
"""The label `kube deploy` gives each service of a stack: the stack's name (docs/stacks.md).
The one `kube.` key a spec may carry: kube's own tools set it, as Swarm sets
`com.docker.stack.namespace`."""


def _no_reserved_labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(key for key in labels if key.startswith("kube.") and key != STACK_LABEL)
    if reserved:
        raise ValueError(f"label keys starting with 'kube.' are reserved: {', '.join(reserved)}")
    return labels


MAX_REPLICAS = 1000
"""Replicas one service may have: the bound of the wire, of the CLI and of the manager's
default (`kube manager --max-replicas` may set a lower one)."""


def replicas_problem(wanted: int, bound: int = MAX_REPLICAS) -> str | None:
    """Why a service cannot have `wanted` replicas, in the one sentence the CLI (exit 2)
    and the manager (its refusal, exit 4) both say; None if it can."""
    if wanted <= bound:
        return None
    return (
        f"replicas {wanted} is over the bound of {bound} a service may have"
        f" (kube manager --max-replicas sets it, at most {MAX_REPLICAS})"
    )


def _replicas_within(wanted: int) -> int:
    problem = replicas_problem(wanted)
    if problem is not None:
        raise ValueError(problem)
    return wanted


Replicas = Annotated[
    int,
    Field(ge=0, json_schema_extra={"maximum": MAX_REPLICAS}),
    AfterValidator(_replicas_within),
]
"""A service's replicas: 0 to MAX_REPLICAS, over it refused in replicas_problem's words."""


_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(
    rf"^([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*/)?{_LABEL_NAME}$"
)
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_LABEL_CHARACTERS = (
    "ASCII letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
)
NODE_LABEL_KEY_RULE = (
    f"up to 63 {_LABEL_CHARACTERS}, after an optional DNS prefix and '/' (example.com/zone)"
)
NODE_LABEL_VALUE_RULE = f"empty, or up to 63 {_LABEL_CHARACTERS}: no spaces or commas"


def node_label_problem(key: str, value: str | None) -> str | None:
    """Why a node label (`value` None: its removal) cannot be, as one sentence; None if
    it can. Kubernetes' rules for label keys and values: a constraint's `a,b` (any of
    them) and the CLI's KEY=VALUE stay unambiguous."""
    if len(key) > 253 + 1 + 63 or not _LABEL_KEY.match(key):
        return f"{key!r} is not a node label key: give {NODE_LABEL_KEY_RULE}, as in Kubernetes"
    if value is not None and not _LABEL_VALUE.match(value):
        return (
            f"{value!r} (of {key}) is not a node label value: give {NODE_LABEL_VALUE_RULE},"
            " as in Kubernetes"
        )
    return None


def node_labels_valid(labels: dict[str, str | None]) -> dict[str, str | None]:
    problem = next(
        (p for k, v in labels.items() if (p := node_label_problem(k, v)) is not None), None
    )
    if problem is not None:
        raise ValueError(problem)
    return labels


MAX_LABEL = 63
"""Characters in one label of a host name (RFC 1035)."""

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def host_address(text: str) -> str:
    """An address another machine can dial: an IP address (v4 or v6, written as the
    standard library writes it) or a host name (RFC 1123 labels); anything else is refused
    with the reason. Loopback passes: it serves a cluster on one machine."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if ip.is_unspecified or ip.is_multicast:
            kind = "an unspecified" if ip.is_unspecified else "a multicast"
            raise ValueError(f"{text!r} is {kind} address, which no other machine can dial")
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            raise ValueError(
                f"{text!r} has a zone (%{ip.scope_id}), which means something only on this host"
            )
        return str(ip)
    if re.fullmatch(r"[0-9.]+", text):  # a name's last label is never all digits (RFC 3696)
        raise ValueError(f"{text!r} is not a valid IP address")
    long = [label for label in text.split(".") if len(label) > MAX_LABEL]
    if long:
        raise ValueError(
            f"{text!r} has a label of {len(long[0])} characters; a host name's labels (the"
            f" parts between dots) have {MAX_LABEL} at most"
        )
    if not _HOSTNAME.match(text):
        raise ValueError(
            f"{text!r} is neither an IP address nor a host name (labels of letters, digits"
            " and '-', dot-separated, up to 253 characters)"
        )
    return text


def endpoint(address: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets: `[fd00::1]:8080`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def by_container_port(host_ports: Mapping[str, int]) -> list[tuple[str, int]]:
    """A task's published ports, container port to host port, in container port order."""
    return sorted(host_ports.items(), key=lambda item: int(item[0]))


def endpoints(address: str | None, host_ports: Mapping[str, int]) -> tuple[str, ...]:
    """Where a container's published ports answer, in container port order (none without
    an address)."""
    if address is None:
        return ()
    return tuple(endpoint(address, host) for _, host in by_container_port(host_ports))


HostAddress = Annotated[
    str,
    AfterValidator(host_address),
    Field(max_length=253),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9A-Za-z:][0-9A-Za-z.:-]*$",
            "maxLength": 253,
            "description": "an IP address or a host name",
        }
    ),
]
Endpoint = Annotated[
    str, Field(max_length=261, description="host:port, where a published port answers")
]


NodeLabels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
Labels = Annotated[
    dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS), AfterValidator(_no_reserved_labels)
]


class WireModel(BaseModel):
    """Base of every message: immutable and closed to unknown fields.

    Decoding from the wire (`shared.codec.decode`) is strict: `"8080"` is not a port.
    Building a model in Python is lax, so `pull_policy="never"` works there. No number
    may be NaN or infinite, here or in anything built on it: a stored record must always
    read back (issue 12).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
