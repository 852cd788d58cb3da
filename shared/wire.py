"""The building blocks of every wire model: the base class and the constrained types."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from shared.units import parse_bytes

MAX_BODY_BYTES = 1024 * 1024
"""Largest message body kube accepts (1 MiB); anything larger is dead-lettered unread."""

MAX_ID_LENGTH = 63
"""Longest task id or name, in characters (a DNS label's limit, as Kubernetes uses)."""

ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}$"
"""Task ids and names end up in container names, so they keep to Docker's alphabet."""

TaskId = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(pattern=ID_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_bytes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"},
            ],
            "description": "bytes, or a string with a unit: '64m', '1g', '512Mi' (powers of 1024)",
        }
    ),
]


def _no_reserved_labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(key for key in labels if key.startswith("kube."))
    if reserved:
        raise ValueError(f"label keys starting with 'kube.' are reserved: {', '.join(reserved)}")
    return labels


def unique_ports(ports: tuple[int, ...]) -> tuple[int, ...]:
    if len(set(ports)) != len(ports):
        raise ValueError("each container port may be listed once")
    return ports


Labels = Annotated[dict[str, str], AfterValidator(_no_reserved_labels)]


class WireModel(BaseModel):
    """Base of every message: immutable and closed to unknown fields.

    Decoding from the wire (`shared.codec.decode`) is strict: `"8080"` is not a port.
    Building a model in Python is lax, so `pull_policy="never"` works there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
