"""Encoding and decoding of wire messages; every decoding failure is one DecodeError."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import DecodeError
from shared.models import MAX_BODY_BYTES
from shared.specs import FORM_TAGS
from shared.wire import ID_PATTERN, MAX_ID_LENGTH

T = TypeVar("T")


MAX_ERRORS_NAMED = 10
"""Bad fields one refusal names: a list of 60,000 bad items must not make a 7 MB answer."""


def describe(error: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it (the first ten)."""
    items = error.errors(include_url=False)
    parts = []
    for item in items[:MAX_ERRORS_NAMED]:
        named = (str(part) for part in item["loc"] if part not in FORM_TAGS)
        where = ".".join(named)[:200] or "body"
        parts.append(f"{where}: {_said(item)[:500]}")
    if len(items) > MAX_ERRORS_NAMED:
        parts.append(f"and {len(items) - MAX_ERRORS_NAMED} more")
    return "; ".join(parts)


def _said(item: Any) -> str:
    """Pydantic's message, or a plainer one where it reads as code ("String should have
    at most 255 characters" for a name of 5000)."""
    given = item.get("input")
    limit = (item.get("ctx") or {}).get("max_length")
    if item["type"] == "string_too_long" and isinstance(given, str) and limit is not None:
        return f"{len(given)} characters long, at most {limit} allowed"
    if item["type"] == "string_pattern_mismatch":
        pattern = str((item.get("ctx") or {}).get("pattern", ""))
        shown = repr(given)[:100] if isinstance(given, str) else "it"
        return f"{shown} {_PATTERNS.get(pattern, f'does not match the pattern {pattern}')}"
    return own_words(str(item["msg"]))


_PATTERNS = {
    ID_PATTERN: f"is not a valid name: 1 to {MAX_ID_LENGTH} letters, digits, '_', '.' or '-',"
    " starting with a letter or a digit",
}
"""What a value must be, for the patterns a person meets, in words (not a regex)."""


_PYDANTIC_WORDS = (
    ("Value error, ", ""),
    ("Assertion failed, ", ""),
    ("Input should be ", "must be "),
)


_PYDANTIC_SENTENCES = {
    "Field required": "missing (it is required)",
    "Extra inputs are not permitted": "not a field this message has",
}


def own_words(message: str) -> str:
    """A pydantic message in our words: a validator's own sentence without pydantic's
    `Value error, ` before it; `Input should be a valid integer` as `must be a valid
    integer`."""
    if message in _PYDANTIC_SENTENCES:
        return _PYDANTIC_SENTENCES[message]
    for theirs, ours in _PYDANTIC_WORDS:
        if message.startswith(theirs):
            return ours + message[len(theirs) :]
    return message


class _DuplicateKey(ValueError):
    """A key given twice, or a number JSON does not have (NaN, Infinity)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        twice = sorted(key for key, count in counts.items() if count > 1)
        raise _DuplicateKey(f"key {', '.join(map(repr, twice))} given more than once")
    return found


def _reject_constant(name: str) -> Any:
    raise _DuplicateKey(f"{name} is not a number JSON allows")


def load_json(text: str) -> Any:
    """Parse JSON as `decode` reads it: a key given twice, NaN and Infinity are refused
    (DecodeError); text that is not JSON raises json.JSONDecodeError."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise DecodeError(str(exc)) from exc
    except RecursionError as exc:  # not a ValueError: it would fail the handler
        raise DecodeError("body is not JSON: nested too deeply") from exc


def decode(
    adapter: TypeAdapter[T],
    body: bytes,
    max_bytes: int = MAX_BODY_BYTES,
    unique_keys: bool = True,
) -> T:
    """Validate a JSON body against a model (through its TypeAdapter).

    A key given twice in one object is refused rather than the last one winning
    silently (it hides what a client meant). That takes a second parse, about 1.5 times
    the cost of validating; what kube's own components send each other (results,
    dispatches: the bulk of the traffic) skips it with `unique_keys=False`, since a key
    given twice there gains its sender nothing it could not send plainly.
    """
    if len(body) > max_bytes:
        raise DecodeError(f"body is {len(body)} bytes, over the {max_bytes}-byte limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not UTF-8: {exc}") from exc
    if unique_keys:
        with contextlib.suppress(json.JSONDecodeError):  # pydantic names the problem below
            load_json(text)
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
