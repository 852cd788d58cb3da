"""Cron schedules in a time zone: cronsim behind our own small interface (docs/jobs.md).

cronsim reads the expression and steps through its ticks, forward and backward, across
daylight-saving changes as Debian's cron does; zoneinfo gives the time zone. Everything
kube keeps of a tick is in UTC: a tick is one instant, whatever its zone's wall clock
shows then.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

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
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"{expression!r} is not a cron expression: {exc}") from exc
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

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        return self._first(moment, reverse=False)

    def before(self, moment: datetime) -> datetime:
        """The last tick strictly before `moment`, in UTC."""
        return self._first(moment, reverse=True)

    def _first(self, moment: datetime, reverse: bool) -> datetime:
        for tick in CronSim(self.expression, moment.astimezone(self.zone), reverse=reverse):
            found = tick.astimezone(UTC)
            if found != moment:  # a tick at `moment` itself is neither before nor after it
                return found
        raise ValueError(f"{self.expression!r} never ticks")
