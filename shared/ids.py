"""Task ids that kube makes: the client and the manager share this one generator.

A generated id is the task's name, cut where needed, and a random suffix; it fits the id
alphabet and `MAX_ID_LENGTH` for every name a spec accepts (up to 63 characters), so the
id of a task with the longest name, or of a service's task, is valid on the wire, in the
store and in the container name the worker derives from it.
"""

from __future__ import annotations

import uuid

from shared.wire import MAX_ID_LENGTH

SUFFIX_LENGTH = 8
"""Random hex characters after the name: 32 bits, so ids of one name rarely collide."""


def new_task_id(name: str) -> str:
    """A fresh id for a task named `name` (a service's tasks bear the service's name)."""
    suffix = uuid.uuid4().hex[:SUFFIX_LENGTH]
    return f"{name[: MAX_ID_LENGTH - SUFFIX_LENGTH - 1]}-{suffix}"
