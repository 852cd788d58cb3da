"""The TaskSpec: what a client asks to run, with its restart, health and security options."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from shared.cron import Concurrency, check_expression, check_zone
from shared.files import MAX_REFS, ConfigRef, SecretRef, no_dot_dot
from shared.wire import (
    MAX_PORTS,
    ByteSize,
    EnvName,
    Labels,
    Name,
    Port,
    Replicas,
    TaskId,
    WireModel,
)

MAX_BACKOFF_SECONDS = 300.0
"""Restart delays double from backoff_seconds up to this cap (Kubernetes uses 5 minutes)."""


class PullPolicy(enum.StrEnum):
    """When the worker pulls a task's image."""

    ALWAYS = "always"  # pull before every start
    IF_NOT_PRESENT = "if-not-present"  # pull only when the engine lacks the image
    NEVER = "never"  # use the local image or fail


class RestartMode(enum.StrEnum):
    """Which ends of an attempt start another attempt."""

    NEVER = "never"  # every end is final
    ON_FAILURE = "on-failure"  # a non-zero exit, an unhealthy or lost container restarts
    ALWAYS = "always"  # any end but a requested stop restarts


class RestartPolicy(WireModel):
    """How a task is restarted; a restart is a new attempt and may go to another node."""

    policy: RestartMode = RestartMode.ON_FAILURE
    max_restarts: Annotated[int, Field(ge=0)] | None = Field(
        default=3, description="restarts before the task ends failed; null: no limit"
    )
    backoff_seconds: Annotated[float, Field(ge=0, le=MAX_BACKOFF_SECONDS)] = Field(
        default=1.0,
        description=f"first delay; doubles each restart, capped at {MAX_BACKOFF_SECONDS:g}s",
    )

    def delay(self, restarts: int) -> float:
        """Seconds to wait before restart number `restarts` (1-based)."""
        return min(self.backoff_seconds * 2.0 ** max(restarts - 1, 0), MAX_BACKOFF_SECONDS)


class PortMapping(WireModel):
    """A container port to publish, on a fixed host port or on one the engine picks."""

    container: Port
    host: Port | None = Field(
        default=None, description="a fixed host port; null: the engine picks a free one"
    )


FORM_TAGS = frozenset({"port-number", "port-mapping"})
"""The tags that tell a port's two forms apart. Pydantic puts them in an error's location
(`ports.0.port-mapping.host`); shared.codec drops them, as no field has such a name."""


def _port_form(value: object) -> str:
    return "port-mapping" if isinstance(value, dict | PortMapping) else "port-number"


PortItem = Annotated[
    Annotated[Port, Tag("port-number")] | Annotated[PortMapping, Tag("port-mapping")],
    Discriminator(_port_form),
]
"""A port to publish: `80`, or `{"container": 80, "host": 8080}`."""


def _distinct_ports(ports: tuple[int | PortMapping, ...]) -> tuple[int | PortMapping, ...]:
    """Each container port published once, and each fixed host port asked for once."""
    mappings = [PortMapping(container=p) if isinstance(p, int) else p for p in ports]
    for what, values in (
        ("container port", [m.container for m in mappings]),
        ("host port", [m.host for m in mappings if m.host is not None]),
    ):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"each {what} may be listed once ({', '.join(map(str, twice))} twice)")
    return ports


MAX_STOP_AFTER_SECONDS = 86_400.0
"""The longest `on_disconnect.stop_after_seconds`: a day. Past that a cut-off copy might as
well keep running until its node returns (the default)."""


HEARTBEAT_SLACK = 1.0
"""Seconds beyond a heartbeat interval that a heartbeat's confirm may take in steady state."""


def least_stop_after(heartbeat_interval: float) -> float:
    """The shortest stop_after a worker honours: it hears from the broker only when a
    heartbeat is confirmed, once an interval, so a shorter one would stop containers of a
    worker in touch. A task asking for less is stopped after this long (worker/disconnect.py),
    and the manager holds its replacement back as long (manager/nodes.py `hold_back`)."""
    return heartbeat_interval + HEARTBEAT_SLACK


class OnDisconnect(WireModel):
    """What a worker does with the task's container while it is out of touch with the broker.

    Without this block the container keeps running until the node returns, and is then
    removed if the task was placed elsewhere meanwhile (two copies may run during a
    partition). With `stop_after_seconds`, the worker stops the container itself once it
    has been out of touch for that long, and the manager places the replacement only after
    that plus a margin, so the task never has two live copies (Nomad's `disconnect` block).
    """

    stop_after_seconds: Annotated[float, Field(ge=1, le=MAX_STOP_AFTER_SECONDS)] = Field(
        description="seconds out of touch with the broker after which the worker stops it"
    )


class HttpCheck(WireModel):
    port: Port
    path: Annotated[str, Field(pattern=r"^/")] = "/"


class TcpCheck(WireModel):
    port: Port


class HealthCheck(WireModel):
    """A probe the worker runs next to the container; exactly one of http, tcp, exec."""

    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    exec: tuple[str, ...] | None = Field(default=None, min_length=1)
    interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    failures: Annotated[int, Field(ge=1, le=100)] = 3
    grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0

    @model_validator(mode="after")
    def _one_probe(self) -> HealthCheck:
        given = [name for name in ("http", "tcp", "exec") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of http, tcp, exec (got {given or 'none'})")
        return self


class Mount(WireModel):
    """A bind mount of a host path (refused unless the worker's policy allows it)."""

    source: Annotated[str, Field(pattern=r"^/")]
    target: Annotated[str, Field(pattern=r"^/")]
    read_only: bool = False


# -- volumes (issue 17): named volumes of the node's engine, docs/volumes.md ---------------


def _not_root(path: str) -> str:
    if not path.strip("/"):
        raise ValueError(f"a volume may not be mounted at {path} (the container's root)")
    return path


# A directory in the container: absolute, not `/`, no `..`, no NUL (as a secret's target).
# The schema's pattern says "not `/`" too; the model says it in words (`_not_root`).
VolumeTarget = Annotated[
    str,
    Field(
        pattern=r"^/[^\x00]*$",
        max_length=4096,
        json_schema_extra={"pattern": r"^/[^\x00]*[^/\x00][^\x00]*$"},
    ),
    AfterValidator(_not_root),
    AfterValidator(no_dot_dot),
]


class VolumeMount(WireModel):
    """A named volume of the node's engine, made on first use and kept across attempts:
    the task then runs only on the node that holds it (docs/volumes.md)."""

    name: Name
    target: VolumeTarget
    read_only: bool = False


def _distinct_volumes(volumes: tuple[VolumeMount, ...]) -> tuple[VolumeMount, ...]:
    """Each volume named once and each target used once."""
    for what, values in (
        ("volume", [v.name for v in volumes]),
        ("volume target", [v.target for v in volumes]),
    ):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"each {what} may be listed once ({', '.join(twice)} twice)")
    return volumes


MAX_VOLUMES = 16
"""Volumes one spec may name."""


def one_replica_with_volumes(replicas: int | None, volumes: tuple[VolumeMount, ...]) -> None:
    """Refuse a service of more than one replica with volumes: its replicas would share one
    volume on one node (docs/volumes.md says why, and what to do instead)."""
    if volumes and replicas is not None and replicas > 1:
        names = ", ".join(v.name for v in volumes)
        raise ValueError(
            f"a service with volumes runs at most 1 replica (asked for {replicas}): its"
            f" replicas would share volume {names} on one node; run one service per"
            " replica, each with its own volume"
        )


# ------------------------------------------------------------------------------------------


class NetworkMode(enum.StrEnum):
    BRIDGE = "bridge"  # the engine's default network
    HOST = "host"  # the host's network stack (refused unless allowed)


class ConstraintOp(enum.StrEnum):
    """How a constraint compares a node label with its values."""

    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    EXISTS = "exists"
    NOT_EXISTS = "not exists"


MAX_RULES = 64
"""Constraints one spec may have, and values one constraint may list: each is checked
against every node at every placement."""

ConstraintKey = Annotated[str, Field(min_length=1, max_length=253)]


class Constraint(WireModel):
    """One rule on a node label, e.g. {"key": "zone", "op": "in", "values": ["a", "b"]}."""

    key: ConstraintKey
    op: ConstraintOp = ConstraintOp.EQ
    values: Annotated[
        tuple[Annotated[str, Field(max_length=253)], ...], Field(max_length=MAX_RULES)
    ] = ()

    @model_validator(mode="after")
    def _values_fit_the_op(self) -> Constraint:
        takes_none = self.op in (ConstraintOp.EXISTS, ConstraintOp.NOT_EXISTS)
        if takes_none and self.values:
            raise ValueError(f"'{self.op.value}' takes no values")
        if not takes_none and not self.values:
            raise ValueError(f"'{self.op.value}' needs at least one value")
        if self.op in (ConstraintOp.EQ, ConstraintOp.NE) and len(self.values) != 1:
            raise ValueError(f"'{self.op.value}' takes exactly one value")
        return self

    def __str__(self) -> str:
        if self.op in (ConstraintOp.EXISTS, ConstraintOp.NOT_EXISTS):
            return f"{self.key} {self.op.value}"
        shown = self.values[0] if len(self.values) == 1 else "{" + ",".join(self.values) + "}"
        return f"{self.key} {self.op.value} {shown}"


# Shorthand: {"zone": ["a", "b"], "disk": "ssd"} means zone in {a, b} and disk == ssd.
# Its keys and lists obey what Constraint checks, since rules() builds Constraints of them.
ConstraintMap = dict[
    ConstraintKey,
    Annotated[str, Field(max_length=253)]
    | Annotated[
        tuple[Annotated[str, Field(max_length=253)], ...], Field(min_length=1, max_length=MAX_RULES)
    ],
]


MAX_CATCH_UP = 1000
"""Missed ticks a job may run after the manager was down."""

MAX_JOB_NAME = 48
"""A job's run is named <job>-<tick as YYYYmmddHHMMSS>, within the 63 characters of an id."""


class TaskSpec(WireModel):
    """What a client asks to run: the body of `task.submit` on `kube.commands`."""

    id: TaskId | None = Field(
        default=None,
        description="client-chosen idempotency key; the same id never makes a second task",
    )
    name: Name
    image: Annotated[str, Field(min_length=1, max_length=255)]
    command: tuple[Annotated[str, Field(max_length=65536)], ...] = ()
    entrypoint: tuple[Annotated[str, Field(max_length=65536)], ...] | None = Field(
        default=None,
        min_length=1,
        description="replaces the image's ENTRYPOINT (the command then follows it); null:"
        " the image's",
    )
    env: dict[EnvName, str] = Field(default_factory=dict)
    ports: Annotated[
        tuple[PortItem, ...], Field(max_length=MAX_PORTS), AfterValidator(_distinct_ports)
    ] = Field(
        default=(),
        description="container ports to publish: a port (the engine picks the host port),"
        ' or {"container": 80, "host": 8080} for a fixed host port',
    )
    cpu: Annotated[float, Field(ge=0, le=1024)] = Field(default=0.0, description="cores")
    memory: ByteSize = 0
    disk: ByteSize = 0
    labels: Labels = Field(default_factory=dict)
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    constraints: (
        Annotated[ConstraintMap, Field(max_length=MAX_RULES)]
        | Annotated[tuple[Constraint, ...], Field(max_length=MAX_RULES)]
    ) = Field(default_factory=dict, description="rules on node labels; all must hold")
    spread: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="a node label to spread tasks of the same service over"
    )
    replicas: Replicas | None = Field(
        default=None, description="makes a service: kube keeps this many tasks running"
    )
    health_check: HealthCheck | None = None
    on_disconnect: OnDisconnect | None = Field(
        default=None,
        description="stop the container on a worker cut off from the broker; absent: keep it",
    )
    # Scheduled jobs (docs/jobs.md): a schedule makes a job whose runs are tasks
    schedule: Annotated[str, Field(max_length=200), AfterValidator(check_expression)] | None = (
        Field(default=None, description="cron: a job, run at each tick (6 fields: seconds first)")
    )
    timezone: Annotated[str, Field(max_length=64), AfterValidator(check_zone)] = "UTC"
    concurrency: Concurrency = Field(default=Concurrency.FORBID, description="while a run lasts")
    catch_up: Annotated[int, Field(ge=0, le=MAX_CATCH_UP)] = Field(
        default=0, description="missed ticks run (the newest) after the manager was down"
    )
    keep_runs: Annotated[int, Field(ge=1, le=1000)] = Field(default=10, description="ended runs")
    # Secrets and configs, mounted as files (docs/secrets.md): never values, only names.
    secrets: Annotated[tuple[SecretRef, ...], Field(max_length=MAX_REFS)] = ()
    configs: Annotated[tuple[ConfigRef, ...], Field(max_length=MAX_REFS)] = ()
    # Options a worker refuses unless its security policy allows them:
    privileged: bool = False
    network_mode: NetworkMode = NetworkMode.BRIDGE
    pid_mode: Annotated[str, Field(pattern="^(host)?$")] = Field(
        default="", description="'host' to share the host's pid namespace"
    )
    mounts: tuple[Mount, ...] = ()
    # -- volumes (issue 17) --
    volumes: Annotated[
        tuple[VolumeMount, ...], Field(max_length=MAX_VOLUMES), AfterValidator(_distinct_volumes)
    ] = Field(
        default=(),
        description="named volumes of the node's engine; the task stays on the node holding them",
    )
    cap_add: tuple[Annotated[str, Field(pattern=r"^[A-Z_]+$")], ...] = ()
    devices: tuple[Annotated[str, Field(pattern=r"^/dev/")], ...] = ()

    @model_validator(mode="after")
    def _job_or_service(self) -> TaskSpec:
        if self.schedule is not None and self.replicas is not None:
            raise ValueError("a spec has a schedule (a job) or replicas (a service), not both")
        if self.schedule is not None and len(self.name) > MAX_JOB_NAME:
            raise ValueError(
                f"a job's name is at most {MAX_JOB_NAME} characters: its runs' ids add the tick"
            )
        return self

    @model_validator(mode="after")
    def _volumes_fit_replicas(self) -> TaskSpec:
        one_replica_with_volumes(self.replicas, self.volumes)
        return self

    def published(self) -> tuple[PortMapping, ...]:
        """The ports to publish, each as a mapping, whichever form the spec used."""
        return tuple(PortMapping(container=p) if isinstance(p, int) else p for p in self.ports)

    def fixed_host_ports(self) -> tuple[int, ...]:
        """The host ports the task asks for by number, in order: a node holds each for one
        task at a time, so the scheduler counts them as a resource."""
        return tuple(sorted(m.host for m in self.published() if m.host is not None))

    def rules(self) -> tuple[Constraint, ...]:
        """The constraints as a list of rules, whichever form the spec used."""
        if isinstance(self.constraints, tuple):
            return self.constraints
        return tuple(
            Constraint(key=key, op=ConstraintOp.EQ, values=(value,))
            if isinstance(value, str)
            else Constraint(key=key, op=ConstraintOp.IN, values=value)
            for key, value in self.constraints.items()
        )
