"""A task's spec read back from an inspected Docker container, for adopting an orphan.

Only what a plain task leaves on its container is read: image, command, environment (less
the image's own), published ports, CPU and memory limits, labels, the health check and
on_disconnect kept in kube's labels. A container that asks for more of its host (mounts,
privileges, the host's network or PIDs, capabilities, devices) is refused: the worker's
security policy was checked against the spec that made it, which is not known here, and
adopting it would let it pass unchecked. Restart policy, constraints and pull policy are
not kept on a container: the adopted task gets the defaults (docs/orphans.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from shared.codec import describe
from shared.specs import HealthCheck, OnDisconnect, PortMapping, TaskSpec
from worker.runtime.base import (
    ATTEMPT_LABEL,
    CLUSTER_LABEL,
    HEALTH_LABEL,
    NODE_LABEL,
    STOP_AFTER_LABEL,
    TASK_LABEL,
)

KUBE_LABELS = frozenset(
    {TASK_LABEL, ATTEMPT_LABEL, NODE_LABEL, HEALTH_LABEL, CLUSTER_LABEL, STOP_AFTER_LABEL}
)


def refused_options(host: Mapping[str, Any]) -> list[str]:
    """What the container asks of its host that adoption does not take over."""
    found = []
    if host.get("Binds") or host.get("Mounts"):
        found.append("host mounts")
    if host.get("Privileged"):
        found.append("privileged mode")
    if host.get("NetworkMode") == "host":
        found.append("the host's network")
    if host.get("PidMode"):
        found.append("the host's PID namespace")
    if host.get("CapAdd"):
        found.append("added capabilities")
    if host.get("Devices"):
        found.append("devices")
    return found


def _ports(bindings: Mapping[str, Sequence[Mapping[str, str]] | None]) -> list[PortMapping]:
    ports = []
    for key, bound in sorted(bindings.items()):
        port, _, protocol = key.partition("/")
        if protocol != "tcp":
            continue
        host = next((b.get("HostPort") for b in bound or () if b.get("HostPort")), None)
        ports.append(PortMapping(container=int(port), host=int(host) if host else None))
    return ports


def task_name(task_id: str) -> str:
    """The name a task id was made from (shared/ids.py: name, a dash, a random suffix)."""
    name, dash, _ = task_id.rpartition("-")
    return name if dash and name else task_id


def recovered_spec(attrs: Mapping[str, Any], image_env: Sequence[str]) -> TaskSpec | str:
    """The spec of the task an inspected container runs, or why it cannot be read."""
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    labels = config.get("Labels") or {}
    refused = refused_options(host)
    if refused:
        return f"it uses {', '.join(refused)}, which adoption does not take over"
    inherited = set(image_env)
    env = dict(
        item.partition("=")[::2] for item in config.get("Env") or () if item not in inherited
    )
    try:
        return TaskSpec(
            name=task_name(str(labels.get(TASK_LABEL, ""))),
            image=str(config.get("Image") or ""),
            command=tuple(config.get("Cmd") or ()),
            env=env,
            ports=tuple(_ports(host.get("PortBindings") or {})),
            cpu=(host.get("NanoCpus") or 0) / 1e9,
            memory=host.get("Memory") or 0,
            labels={k: v for k, v in labels.items() if k not in KUBE_LABELS},
            health_check=(
                HealthCheck.model_validate_json(labels[HEALTH_LABEL])
                if HEALTH_LABEL in labels
                else None
            ),
            on_disconnect=(
                OnDisconnect(stop_after_seconds=float(labels[STOP_AFTER_LABEL]))
                if STOP_AFTER_LABEL in labels
                else None
            ),
        )
    except (ValidationError, ValueError) as exc:
        why = describe(exc) if isinstance(exc, ValidationError) else str(exc)
        return f"its configuration is no valid task spec: {why}"
