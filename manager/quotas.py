"""Bounds on what one client may ask of the manager: replicas per service, and tasks
created per minute per broker user (issue 12: one message with `replicas: 10000`, scaled
to 0 and back, kept the manager busy for seconds and grew its memory fivefold).

A refusal names the bound and the flag that sets it. The per-user budget is a token
bucket: it refills at `tasks_per_minute` a minute up to that many, so a burst of that
size passes at once. It lives in memory: a restarted manager starts every user full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.wire import MAX_REPLICAS, replicas_problem

TASKS_PER_MINUTE = 30_000
"""Tasks one broker user may create a minute (`kube manager --max-tasks-per-minute`); a
burst of as many passes at once (the control-plane benchmark submits 10,000)."""


@dataclass
class Quotas:
    """The bounds, and what each user has left of its budget."""

    max_replicas: int = MAX_REPLICAS
    tasks_per_minute: int = TASKS_PER_MINUTE
    _left: dict[str, tuple[float, float]] = field(default_factory=dict)

    def replicas(self, wanted: int) -> str | None:
        """Why a service of `wanted` replicas is refused."""
        return replicas_problem(wanted, self.max_replicas)

    def take(self, user: str | None, tasks: int, now: float) -> str | None:
        """Charge `tasks` new tasks to a user's budget, or say why they are refused (`now`
        on the monotonic clock: a step of the wall clock neither refills nor drains it)."""
        if tasks <= 0:
            return None
        who = user or "(no user_id)"
        rate = float(self.tasks_per_minute)
        left, since = self._left.get(who, (rate, now))
        left = min(rate, left + rate * max(now - since, 0.0) / 60.0)
        if tasks > left:
            self._left[who] = (left, now)
            return (
                f"user {who} may create {self.tasks_per_minute} tasks a minute and has"
                f" {int(left)} left now, not {tasks} (kube manager --max-tasks-per-minute)"
            )
        self._left[who] = (left - tasks, now)
        return None
