"""How long ended tasks are kept before they are purged, as Nomad's garbage collection
and Kubernetes' terminated-pod threshold do: without it, a cluster that runs short tasks
(or scales a service up and down) grows its store and its lists for ever.

An ended task is purged once it ended more than `keep_for` ago, or once more than `keep`
tasks have ended (the ones that ended first go first). Purging is `kube rm` done by the
manager: the record and its history are forgotten, `task.removed` is published, and the
node removes the exited container it kept for `kube logs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.models import TaskRecord

KEEP_ENDED = 10_000
"""Ended tasks kept at most (`kube manager --keep-ended`)."""

KEEP_ENDED_FOR = timedelta(hours=24)
"""How long an ended task is kept at most (`kube manager --keep-ended-for`)."""

PURGE_BATCH = 500
"""Tasks purged in one pass: a pass stays short, the next one goes on."""


@dataclass(frozen=True)
class Retention:
    """How many ended tasks to keep, and for how long."""

    keep: int = KEEP_ENDED
    keep_for: timedelta = KEEP_ENDED_FOR

    def purgeable(
        self, oldest: Sequence[TaskRecord], ended: int, now: datetime
    ) -> list[TaskRecord]:
        """Which of the tasks that ended first (`oldest`, in the order they ended) go,
        when `ended` tasks have ended in all."""
        over = ended - self.keep
        return [
            task
            for rank, task in enumerate(oldest)
            if rank < over or now - task.updated_at > self.keep_for
        ]
