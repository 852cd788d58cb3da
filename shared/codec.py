"""Encoding and decoding of wire messages; every decoding failure is one DecodeError."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import DecodeError
from shared.models import MAX_BODY_BYTES

T = TypeVar("T")


def describe(error: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def decode(adapter: TypeAdapter[T], body: bytes, max_bytes: int = MAX_BODY_BYTES) -> T:
    """Validate a JSON body against a model (through its TypeAdapter)."""
    if len(body) > max_bytes:
        raise DecodeError(f"body is {len(body)} bytes, over the {max_bytes}-byte limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8: {exc}") from exc
    try:
        return adapter.validate_json(text, strict=True)
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise DecodeError(f"body is not JSON: {exc.errors()[0]['msg']}") from exc
        raise DecodeError(describe(exc)) from exc


def encode(message: BaseModel) -> bytes:
    """The JSON body of a model."""
    return message.model_dump_json(exclude_none=False).encode("utf-8")


def encode_value(value: Any) -> bytes:
    """The JSON body of anything pydantic can serialise (lists of models, dicts)."""
    return TypeAdapter(Any).dump_json(value)
