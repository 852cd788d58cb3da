"""Values of command-line flags that more than one command takes."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def whole(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum`, for flags that count or bound something."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """A time in the past: a duration ago (`30s`, `5m`, `1.5h`, `2d`), or an ISO 8601
    time (UTC unless it names its offset)."""
    found = DURATION.match(text.strip())
    if found is not None:
        ago = float(found.group(1)) * UNIT_SECONDS[found.group(2)]
        if not math.isfinite(ago) or ago > 100 * 365 * 86400:
            raise argparse.ArgumentTypeError(f"{text!r} is too long ago")
        return now() - timedelta(seconds=ago)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30s, 5m, 2h, 1d) nor an ISO 8601 time"
            " (2026-01-31T12:00:00Z)"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
