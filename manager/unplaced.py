"""Why a task could not be placed, as one of a few words fit for a metric label.

The scheduler explains a NoFit in a sentence for people (`manager.scheduler.no_fit_reason`,
e.g. "no node can take 2 cpus: node-1 has 0.5 cpus free, node-2 is down"); a Prometheus
label needs a bounded value, so the sentence is classified here. When several nodes fail
for different reasons, the first kind in `KINDS` that any node names wins: a resource
shortage says more about the cluster than a node that happens to be down.
"""

from __future__ import annotations

import re

NO_FIT_PREFIXES = ("no node can take ", "no worker has joined yet")
"""How every NoFit reason starts; any other pending error is not about placement."""

KINDS = (
    "insufficient_cpu",
    "insufficient_memory",
    "insufficient_disk",
    "constraints",
    "task_cap",
    "cordoned",
    "nodes_down",
    "no_nodes",
    "other",
)
"""Every value `kind` returns, most telling first."""

_FREE = re.compile(r" has ((?:[^,:]+(?:cpus?|memory|disk))(?:, [^,:]+(?:cpus?|memory|disk))*) free")
_MARKERS = (
    ("constraints", re.compile(r" fails ")),
    ("task_cap", re.compile(r" tasks \(the cap is ")),
    ("cordoned", re.compile(r" is cordoned")),
    ("nodes_down", re.compile(r" is down|container engine is down")),
)


def is_no_fit(error: str | None) -> bool:
    """Whether a pending task's error is the scheduler's NoFit reason."""
    return error is not None and error.startswith(NO_FIT_PREFIXES)


def kind(reason: str) -> str:
    """The label for a NoFit reason: one of KINDS."""
    if reason.startswith("no worker has joined yet"):
        return "no_nodes"
    found: set[str] = set()
    for match in _FREE.finditer(reason):
        for item in match.group(1).split(", "):
            resource = item.rsplit(" ", 1)[-1]
            found.add(
                "insufficient_cpu" if resource.startswith("cpu") else f"insufficient_{resource}"
            )
    found.update(name for name, marker in _MARKERS if marker.search(reason))
    return next((name for name in KINDS if name in found), "other")
