"""Byte sizes as people write them ("64m", "1g", "512Mi") turned into integers."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "ki": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
SIZE_PATTERN = r"^ *([0-9]+(?:\.[0-9]+)?) *((?:[bB]|[kKmMgGtT][iI]?[bB]?)?) *$"
"""A size as a string: digits, then a unit of _UNITS in any case (the JSON Schema of a
size says the same, so a client that follows it is never refused)."""
_SIZE = re.compile(SIZE_PATTERN)


def parse_bytes(value: object) -> int:
    """Return a size in bytes; units are powers of 1024, as Docker reads them."""
    if isinstance(value, bool):
        raise ValueError("a size must be an integer number of bytes or a string like '64m'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("a size must be an integer number of bytes or a string like '64m'")
    match = _SIZE.match(value)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size: use bytes or a unit k, m, g, t (e.g. '64m')")
    size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(size):  # hundreds of digits: int() would raise OverflowError
        raise ValueError(f"{value[:40]!r}... is too large a size")
    return int(size)


def format_bytes(size: int) -> str:
    """The shortest exact-enough human form of a size: 67108864 -> '64Mi'."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"
