"""What a deploy of a stack would change, service by service and field by field: pure, from
the stack and the services the cluster has. `kube diff` shows it; `kube deploy` does it."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kube.stack.compose import Stack
from kube.stack.loader import where
from shared.errors import RequestError
from shared.files import FileKind
from shared.models import JobRecord, ServiceRecord, TaskSpec
from shared.wire import STACK_LABEL


class Action(enum.StrEnum):
    """What a deploy does to one service."""

    CREATE = "create"  # not in the cluster (or stopped): submitted
    UPDATE = "update"  # its spec differs: rolled onto the new one
    SCALE = "scale"  # only its replicas differ
    UNCHANGED = "unchanged"  # nothing is sent
    REMOVE = "remove"  # of the stack, not in the file, and --prune given
    NOT_IN_FILE = "not in file"  # of the stack, not in the file: reported, kept


class StackConflict(RequestError):
    """A service of the file's name exists and belongs to no stack, or to another one."""


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """One service's (or job's) part of the plan; `spec` is the one a create or update
    sends."""

    name: str
    action: Action
    fields: tuple[FieldChange, ...] = ()
    spec: TaskSpec | None = None
    job: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "action": self.action.value,
            "kind": "job" if self.job else "service",
            "fields": [
                {"field": f.field, "before": f.before, "after": f.after} for f in self.fields
            ],
        }


Record = TypeVar("Record", ServiceRecord, JobRecord)


def of_stack(records: Sequence[Record], name: str) -> list[Record]:
    """The services (or jobs) a deploy of stack `name` made (its label), stopped ones too."""
    return [s for s in records if s.spec.labels.get(STACK_LABEL) == name]


def of_stack_any(records: Sequence[Record]) -> list[Record]:
    """The services (or jobs) of any stack."""
    return [s for s in records if STACK_LABEL in s.spec.labels]


def current(service: ServiceRecord) -> dict[str, Any]:
    """A service's spec as fields, with the replicas it keeps now (kube scale's too), and
    its secrets' and configs' versions left out: the manager sets them when it rolls the
    service onto a new value, and a stack file (like a spec without them) means the newest."""
    return {**desired(service.spec), "replicas": service.replicas}


def desired(spec: TaskSpec) -> dict[str, Any]:
    """A spec as fields, as `current` shows them (a job's as the manager keeps it)."""
    data: dict[str, Any] = spec.model_dump(mode="json", exclude={"id"})
    for kind in ("secrets", "configs", "volumes"):
        if kind in data:
            data[kind] = [{k: v for k, v in ref.items() if k != "version"} for ref in data[kind]]
    return data


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted fields (`env.MODE`, `restart.policy`); lists kept whole."""
    if not isinstance(data, dict) or (prefix and not data):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    old, new = flat(before), flat(after)
    return tuple(
        FieldChange(key, old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    )


def plan(
    stack: Stack,
    services: Sequence[ServiceRecord],
    prune: bool,
    jobs: Sequence[JobRecord] = (),
) -> list[Change]:
    """The stack's services and jobs in deploy order, then those of the stack the file
    lost. A job is created or updated by submitting it (the manager replaces its spec)."""
    by_name = {s.name: s for s in services}
    job_by_name = {j.name: j for j in jobs}
    changes = []
    for service in stack.services:
        spec = service.spec
        if service.job:
            changes.append(job_change(stack.name, spec, job_by_name.get(spec.name)))
            continue
        found = by_name.get(spec.name)
        if found is not None and found.spec.labels.get(STACK_LABEL) != stack.name:
            owner = found.spec.labels.get(STACK_LABEL)
            raise conflict("service", spec.name, stack.name, owner)
        if found is None or found.desired_state == "stopped":
            changes.append(Change(spec.name, Action.CREATE, differences({}, desired(spec)), spec))
            continue
        fields = differences(current(found), desired(spec))
        if not fields:
            changes.append(Change(spec.name, Action.UNCHANGED))
        elif [f.field for f in fields] == ["replicas"]:
            changes.append(Change(spec.name, Action.SCALE, fields, spec))
        else:
            changes.append(Change(spec.name, Action.UPDATE, fields, spec))
    names = {s.spec.name for s in stack.services if not s.job}
    for left in of_stack(services, stack.name):
        if left.name not in names and left.desired_state == "running":
            changes.append(Change(left.name, Action.REMOVE if prune else Action.NOT_IN_FILE))
    job_names = {s.spec.name for s in stack.services if s.job}
    for gone in of_stack(jobs, stack.name):
        if gone.name not in job_names:
            action = Action.REMOVE if prune else Action.NOT_IN_FILE
            changes.append(Change(gone.name, action, job=True))
    return changes


class MissingFiles(RequestError):
    """Services of the file mount secrets or configs the manager does not have."""


def used_kinds(stack: Stack) -> list[FileKind]:
    """The kinds of stored files (secrets, configs) the stack's services mount."""
    return [kind for kind in FileKind if any(_refs(s.spec, kind) for s in stack.services)]


def missing_files(stack: Stack, known: Mapping[FileKind, Collection[str]]) -> list[str]:
    """Each secret or config a service mounts that is not in `known`, with its key path
    (`services.web.secrets[0]: no such secret: db`), in the file's order: a deploy checks
    them before it sends anything, so a missing one leaves the cluster as it was."""
    return [
        f"{where('services', s.key, f'{kind.value}s', at)}: no such {kind.value}: {name}"
        for s in stack.services
        for kind in FileKind
        for at, name in enumerate(_refs(s.spec, kind))
        if name not in known.get(kind, ())
    ]


def _refs(spec: TaskSpec, kind: FileKind) -> list[str]:
    return [ref.name for ref in (spec.secrets if kind is FileKind.SECRET else spec.configs)]


def conflict(kind: str, name: str, stack: str, owner: str | None) -> StackConflict:
    return StackConflict(
        f"{kind} {name} exists and is not of stack {stack}"
        + (f" (it is of stack {owner})" if owner else "")
        + ": remove it, or deploy under another --name"
    )


def job_change(stack: str, spec: TaskSpec, found: JobRecord | None) -> Change:
    """A job of the file: created, updated (submitted again) or unchanged."""
    if found is not None and found.spec.labels.get(STACK_LABEL) != stack:
        raise conflict("job", spec.name, stack, found.spec.labels.get(STACK_LABEL))
    if found is None:
        return Change(spec.name, Action.CREATE, differences({}, desired(spec)), spec, job=True)
    fields = differences(desired(found.spec), desired(spec))
    return Change(spec.name, Action.UPDATE if fields else Action.UNCHANGED, fields, spec, job=True)


def changed(changes: Sequence[Change]) -> bool:
    return any(c.action != Action.UNCHANGED for c in changes)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(_shown(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)


def render(changes: Sequence[Change]) -> str:
    """The plan as a table: a line per service, a line per changed field under it."""
    if not changed(changes):
        return "no changes"
    rows = [("SERVICE", "ACTION", "FIELD", "BEFORE", "AFTER")]
    for change in changes:
        action = change.action.value
        if change.action == Action.NOT_IN_FILE:
            action += " (kept; --prune removes it)"
        rows.append((change.name, action, "", "", ""))
        if change.action != Action.CREATE:
            rows += [("", "", f.field, _shown(f.before), _shown(f.after)) for f in change.fields]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
