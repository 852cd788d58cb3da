"""The worker's security policy: which risky container options it accepts.

Specs come from anyone who may publish to `kube.commands`, so the worker is the guard.
By default it refuses privileged mode, the host's network or pid namespace, bind mounts,
added capabilities and devices. A policy file (TOML) or flags allow each one, and may
restrict images to an allow-list of shell-style patterns:

    allow_privileged = false
    allow_host_network = false
    allow_host_pid = false
    mount_sources = ["/srv/data"]      # host path prefixes that may be bind-mounted
    capabilities = ["NET_ADMIN"]       # capabilities that may be added
    devices = ["/dev/fuse"]            # devices that may be passed through
    images = ["localhost/*", "registry.example.com/team/*"]   # empty: any image
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared.errors import KubeError
from shared.specs import NetworkMode, TaskSpec


class PolicyError(KubeError):
    """A policy file that cannot be read or has unknown keys."""


@dataclass(frozen=True)
class WorkerPolicy:
    """What this worker allows beyond a plain container."""

    allow_privileged: bool = False
    allow_host_network: bool = False
    allow_host_pid: bool = False
    mount_sources: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    images: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> WorkerPolicy:
        """Read a TOML policy file; unknown keys are an error, not ignored."""
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"cannot read the worker policy {path}: {exc}") from exc
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"{path}: unknown keys {', '.join(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            wants_list = key not in _FLAGS
            ok = (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
                if wants_list
                else isinstance(value, bool)
            )
            if not ok:
                kind = "a list of strings" if wants_list else "true or false"
                raise PolicyError(f"{path}: {key} must be {kind}, not {value!r}")
            values[key] = tuple(value) if wants_list else value
        return cls(**values)

    def merge(self, other: WorkerPolicy) -> WorkerPolicy:
        """Everything either policy allows (flags add to a file)."""
        return WorkerPolicy(
            allow_privileged=self.allow_privileged or other.allow_privileged,
            allow_host_network=self.allow_host_network or other.allow_host_network,
            allow_host_pid=self.allow_host_pid or other.allow_host_pid,
            mount_sources=self.mount_sources + other.mount_sources,
            capabilities=self.capabilities + other.capabilities,
            devices=self.devices + other.devices,
            images=self.images + other.images,
        )

    def violations(self, spec: TaskSpec) -> list[str]:
        """What the spec asks for that this policy refuses, each with how to allow it."""
        found = []
        if spec.privileged and not self.allow_privileged:
            found.append("privileged mode is not allowed (worker flag --allow-privileged)")
        if spec.network_mode == NetworkMode.HOST and not self.allow_host_network:
            found.append("the host network is not allowed (--allow-host-network)")
        if spec.pid_mode == "host" and not self.allow_host_pid:
            found.append("the host pid namespace is not allowed (--allow-host-pid)")
        for mount in spec.mounts:
            if not any(_under(mount.source, prefix) for prefix in self.mount_sources):
                found.append(f"bind mount of {mount.source} is not allowed (--allow-mount PATH)")
        for cap in spec.cap_add:
            if cap not in self.capabilities:
                found.append(f"capability {cap} is not allowed (--allow-cap {cap})")
        for device in spec.devices:
            if device not in self.devices:
                found.append(f"device {device} is not allowed (--allow-device {device})")
        if self.images and not any(fnmatch.fnmatchcase(spec.image, p) for p in self.images):
            found.append(f"image {spec.image} matches none of {', '.join(self.images)}")
        return found


_FLAGS = frozenset({"allow_privileged", "allow_host_network", "allow_host_pid"})


def _under(path: str, prefix: str) -> bool:
    """True when path is prefix or inside it (no '..' tricks: the spec's path is taken as is)."""
    clean = Path(path)
    if ".." in clean.parts:
        return False
    return clean == Path(prefix) or Path(prefix) in clean.parents
