"""Values of command-line flags that more than one command takes."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def whole(minimum: int, problem: Callable[[int], str | None] | None = None) -> Callable[[str], int]:
    """A whole number of at least `minimum`, for flags that count or bound something;
    `problem` says why a value above it cannot be (e.g. shared.wire.replicas_problem)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        said = None if problem is None else problem(value)
        if said is not None:
            raise argparse.ArgumentTypeError(said)
        return value

    return parse
