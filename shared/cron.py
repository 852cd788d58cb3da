"""Cron schedules in a time zone: croniter behind our own small interface (docs/jobs.md).

croniter (maintained by pallets-eco) reads the expression and steps through its ticks;
zoneinfo gives the time zone. Everything kube keeps of a tick is in UTC: a tick is one
instant, whatever the wall clock of its zone shows then.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

FIELDS = (5, 6)
"""Minute hour day month weekday; or a seconds field first (`*/2 * * * * *`), which tests
use to tick in seconds."""


class Concurrency(enum.StrEnum):
    """What a tick does while a previous run of the job has not ended."""

    FORBID = "forbid"  # skip the tick, recorded with the reason
    ALLOW = "allow"  # start another run beside it
    REPLACE = "replace"  # stop the running one, then start the new run


def check_expression(expression: str) -> str:
    """The expression, if croniter reads it and it has 5 or 6 fields; else ValueError."""
    fields = len(expression.split())
    if fields not in FIELDS:
        raise ValueError(
            f"a schedule has 5 fields (minute hour day month weekday), or 6 with seconds"
            f" first; {expression!r} has {fields}"
        )
    if not croniter.is_valid(expression, second_at_beginning=True):
        raise ValueError(f"{expression!r} is not a cron expression")
    return expression


def check_zone(name: str) -> str:
    """The time zone's IANA name, if this host knows it; else ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name: Europe/Paris, UTC)") from exc
    return name


class Schedule:
    """A cron expression's ticks in a time zone, as UTC instants."""

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        self.expression = check_expression(expression)
        self.zone = ZoneInfo(check_zone(zone))

    def _iter(self, start: datetime) -> croniter:
        return croniter(self.expression, start.astimezone(self.zone), second_at_beginning=True)

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        found: datetime = self._iter(moment).get_next(datetime)
        return found.astimezone(UTC)

    def before(self, moment: datetime) -> datetime:
        """The last tick strictly before `moment`, in UTC."""
        found: datetime = self._iter(moment).get_prev(datetime)
        return found.astimezone(UTC)
