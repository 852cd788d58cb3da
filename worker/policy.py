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
    allow_local_registries = false     # pulls from loopback / link-local registries
    allow_exec = false                 # `kube exec` into this node's tasks

Two checks need the worker's own filesystem or engine, so the runtime makes them at the
last moment (worker/runtime/docker.py) with the pure decisions here: a mount source is
resolved (every symlink) just before the container is created and the resolved path must
still be under an allowed source; and an image is pulled from a registry on a loopback,
link-local or unspecified address only when allowed. Docker reads the first part of a
reference as a registry host when it has a `.` or `:` or is `localhost`, so the local
images named `localhost/kube-busybox` run when present; only pulling them is refused.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared.errors import RuntimeFailure, SettingsError
from shared.execs import ExecRefusal
from shared.specs import NetworkMode, TaskSpec


class PolicyError(SettingsError):
    """A policy file that cannot be read or has unknown keys (a usage error, exit 2)."""


class PolicyRefused(RuntimeFailure):
    """A start the policy refused once the worker looked at the host (a mount or a pull)."""

    def __init__(self, node: str, violations: list[str]) -> None:
        super().__init__(f"refused by the security policy of {node}: {'; '.join(violations)}")
        self.violations = violations


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
    allow_local_registries: bool = False
    allow_exec: bool = False  # `kube exec`: a command, even a shell, in a task's container

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
            allow_local_registries=self.allow_local_registries or other.allow_local_registries,
            allow_exec=self.allow_exec or other.allow_exec,
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

    def exec_refusal(self) -> ExecRefusal | None:
        """Why this node refuses `kube exec` (None: it allows it)."""
        return None if self.allow_exec else ExecRefusal.NODE_DISALLOWS

    def resolved_mount_violation(self, source: str, resolved: str) -> str | None:
        """Why a mount whose source resolves (every symlink followed) to `resolved` is refused."""
        if any(_under(resolved, prefix) for prefix in self.mount_sources):
            return None
        allowed = ", ".join(self.mount_sources) or "none"
        return (
            f"bind mount of {source} resolves to {resolved}, which is under none of the"
            f" allowed mount sources ({allowed}; --allow-mount PATH)"
        )

    def pull_violation(self, image: str) -> str | None:
        """Why the engine may not pull `image`: its registry is on a local address."""
        host = registry_host(image)
        kind = None if host is None or self.allow_local_registries else local_address_kind(host)
        if kind is None:
            return None
        article = "an" if kind[0] in "aeiou" else "a"
        return (
            f"pulling image {image} would connect to registry {host}, {article} {kind} address"
            " (worker flag --allow-local-registry, policy key allow_local_registries)"
        )


_FLAGS = frozenset(
    {
        "allow_privileged",
        "allow_host_network",
        "allow_host_pid",
        "allow_local_registries",
        "allow_exec",
    }
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # connecting to 0.x.y.z reaches this host


def registry_host(image: str) -> str | None:
    """The registry host of an image reference as Docker reads it; None for Docker Hub.

    Docker's rule (distribution/reference, splitDockerDomain): the part before the first
    `/` is a registry when it has a `.` or a `:`, is `localhost`, or has capitals.
    """
    first, slash, _ = image.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first == first.lower()
    ):
        return None
    if first.startswith("["):  # [::1]:5000
        return first[1:].partition("]")[0].lower()
    host, colon, port = first.rpartition(":")
    return (host if colon and port.isdigit() else first).lower()


def local_address_kind(host: str) -> str | None:
    """The kind of local address host names (loopback, link-local, unspecified), or None.

    Names that only DNS maps to a local address are not caught: use `images` patterns
    for a strict list of registries.
    """
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:  # the engine's resolver also reads the short forms 127.1 and 0x7f.1
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "unspecified"
    return None


def _under(path: str, prefix: str) -> bool:
    """True when path is prefix or inside it (no '..' tricks: the spec's path is taken as is)."""
    clean = Path(path)
    if ".." in clean.parts:
        return False
    return clean == Path(prefix) or Path(prefix) in clean.parents
