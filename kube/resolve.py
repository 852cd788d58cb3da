"""Which task a user means: an id, a task's name, or the start of an id, as docker and
nomad accept them. Pure: it looks at lists the client fetched.

In order, the first that matches wins:
1. a service's name, where a service is accepted (`stop`, `rm`, `restart`): kept as is;
2. a task's id;
3. a task's name: the one task of that name not ended, else the newest task of that
   name (a name run again and again: the last run), said through `said`;
4. the start of one task's id (`web-1a` for `web-1a2b3c4d`).

Two or more candidates at one step are an `Ambiguous` error naming them. Nothing matched
leaves the text as it was, so the manager says what it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from shared.errors import SettingsError
from shared.models import TaskRecord

SHOWN = 5
"""Candidates an ambiguity names; the rest are counted."""


class Ambiguous(SettingsError):
    """Text that names more than one task; `candidates` are their ids."""

    def __init__(self, text: str, candidates: Sequence[TaskRecord]) -> None:
        self.text = text
        self.candidates = tuple(t.id for t in candidates)
        shown = ", ".join(f"{t.id} ({t.state.value})" for t in candidates[:SHOWN])
        more = len(candidates) - SHOWN
        if more > 0:
            shown += f" and {more} more"
        super().__init__(f"{text!r} names {len(candidates)} tasks: {shown}; give one id")


def task_id(
    text: str,
    tasks: Sequence[TaskRecord],
    services: Collection[str] = (),
    said: Callable[[str], None] = lambda _: None,
) -> str:
    """The task (or service) that `text` means; `text` itself if nothing matches. A
    choice the user may not expect (the newest of several ended tasks) is told to `said`."""
    if text in services or any(t.id == text for t in tasks):
        return text
    named = [t for t in tasks if t.name == text]
    live = [t for t in named if not t.state.terminal]
    if len(live) == 1:
        return live[0].id
    if len(live) > 1:
        raise Ambiguous(text, live)
    if named:
        newest = max(named, key=lambda t: (t.created_at, t.id))
        if len(named) > 1:
            said(
                f"{text!r} names {len(named)} ended tasks; taking the newest, {newest.id}"
                f" ({newest.state.value}, created {newest.created_at:%Y-%m-%d %H:%M:%S})"
            )
        return newest.id
    begun = [t for t in tasks if t.id.startswith(text)]
    if len(begun) > 1:
        raise Ambiguous(text, begun)
    return begun[0].id if begun else text
