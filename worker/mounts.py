"""Mount sources as the host sees them: resolved on the worker just before the create call.

A task allowed to bind-mount a directory can put a symlink in it (`DIR/link -> /`), and
the engine follows symlinks in a source when it mounts it: checking the path as written
would let a second task mount `DIR/link`, the host's root. So every source is resolved
here (all symlinks, strict: it must exist), the resolved path is checked against the
policy, and the resolved path is what the engine is given.

A window remains: a task that can write under an allowed directory may swap a resolved
directory for a symlink between this check and the engine's mount at start. The runtime
resolves immediately before it creates the container, and checks the container's bind
sources again immediately before it starts it (each must still resolve to itself), so
the window is the engine's own start; allow mounts of directories that tasks cannot
write, or mount them read-only, to close it. The worker must see host paths where the
engine does (run it on the host, or with those directories mounted at the same paths).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from shared.specs import TaskSpec
from worker.policy import PolicyRefused, WorkerPolicy


def resolve_allowed(policy: WorkerPolicy) -> WorkerPolicy:
    """The policy with its allowed mount sources resolved, once, when the worker starts: a
    resolved source never lies under a symlink, so `/var/run` must be compared as `/run`."""
    sources = tuple(os.path.realpath(source) for source in policy.mount_sources)
    return dataclasses.replace(policy, mount_sources=sources)


def resolve_mounts(spec: TaskSpec, policy: WorkerPolicy, node: str) -> TaskSpec:
    """The spec with each mount source resolved; PolicyRefused when one is not allowed."""
    if not spec.mounts:
        return spec
    refused: list[str] = []
    mounts = []
    for mount in spec.mounts:
        resolved = _resolve(mount.source, node, refused)
        if resolved is None:
            continue
        reason = policy.resolved_mount_violation(mount.source, resolved)
        if reason is not None:
            refused.append(reason)
        mounts.append(mount.model_copy(update={"source": resolved}))
    if refused:
        raise PolicyRefused(node, refused)
    return spec.model_copy(update={"mounts": tuple(mounts)})


def changed_sources(sources: list[str], policy: WorkerPolicy, node: str) -> list[str]:
    """What is wrong with resolved sources the engine is about to mount: each must still
    resolve to itself (no component became a symlink) and be allowed."""
    found: list[str] = []
    for source in sources:
        resolved = _resolve(source, node, found)
        if resolved is not None and resolved != source:
            found.append(
                f"bind mount source {source} changed since it was checked:"
                f" it resolves to {resolved}"
            )
        elif resolved is not None:
            reason = policy.resolved_mount_violation(source, resolved)
            found.extend([reason] if reason is not None else [])
    return found


def _resolve(source: str, node: str, refused: list[str]) -> str | None:
    """The source with every symlink resolved; None, with the reason added, if it cannot be."""
    try:
        return str(Path(source).resolve(strict=True))
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        refused.append(f"bind mount of {source} cannot be resolved on {node}: {cause}")
        return None
