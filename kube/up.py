"""`kube up`: a manager and N workers on this machine, supervised as one process group.

The children are `kube manager` and `kube worker --name <prefix>-<i>`, started in a
process group of their own, so a terminal's Ctrl-C reaches only `kube up`, which then
stops them in one `killpg` and removes every container labelled with one of its node
names (unless `--keep`). Their output is shown line by line, prefixed with their name.

Every ending stops the children and removes the temporary folder: Ctrl-C, SIGTERM,
SIGHUP (the terminal was closed), a reader that went away (`kube up | head -1`, see
kube/sink.py), an exception of its own. If `kube up` is killed outright (SIGKILL), the
kernel kills the children (kube/lifeline.py). Where a manager already holds the vhost,
it refuses to start a second one.

With no broker at KUBE_AMQP_URL and a Docker engine at hand, it starts a RabbitMQ
container (`--start-broker`, or after asking on a terminal); otherwise it says how to
get one.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import docker
import docker.errors

from kube import leftovers, localbroker
from kube.client import Client
from kube.lifeline import die_with_parent
from kube.sink import Gone, Sink
from manager.secret_key import create_key_file
from manager.store import read_cluster_id
from manager.store.url import sqlite_path
from shared import topology
from shared.errors import KubeError, MessagingError, RuntimeFailure
from shared.images import BUILD_BUSYBOX, LOCAL_BUSYBOX
from shared.rpc import RpcChannel
from shared.settings import DEFAULT_AMQP_URL, Settings, redact
from worker.runtime.base import CLUSTER_LABEL, NODE_LABEL

log = logging.getLogger(__name__)

OK = 0
FAILED = 1
REFUSED = 4  # another manager already holds the vhost
BROKER_DOWN = 5
PIPE_CLOSED = 141  # the reader of the output went away (128 + SIGPIPE, as a shell says)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, kill or systemd, and a closed terminal: each stops the cluster and cleans up."""
STOP_GRACE = 15.0
"""Seconds the children get to stop after SIGTERM before SIGKILL."""
WATCH_EVERY = 2.0
"""Seconds between two looks at which manager leads, when `kube up` runs several."""


@dataclass(frozen=True)
class UpOptions:
    """What `kube up` runs; built by the CLI from flags."""

    workers: int = 2
    name_prefix: str = "node"
    start_broker: bool = False
    keep: bool = False
    db: Path | None = None  # None: a fresh file, or the kept one with keep
    store: str | None = None  # the manager's store URL, instead of the SQLite file `db`
    scheduler: str = "epvm"
    runtime: str = "docker"
    broker_image: str = localbroker.BROKER_IMAGE
    ready_timeout: float = 60.0
    log_level: str = "INFO"
    metrics_port: int = 0  # the manager's /metrics; worker i takes metrics_port + i; 0: off
    managers: int = 1  # 2 or more: a leader and standbys, on a PostgreSQL `store`
    allow_exec: bool = False  # the workers run `kube exec` (worker flag --allow-exec)

    @property
    def nodes(self) -> list[str]:
        return [f"{self.name_prefix}-{i}" for i in range(1, self.workers + 1)]


@dataclass(frozen=True)
class Child:
    """One process of the local cluster."""

    name: str
    argv: list[str]


def plan(options: UpOptions, db: Path) -> list[Child]:
    """The processes to start: the manager(s) first, then the workers."""
    kube = [sys.executable, "-m", "kube"]
    workers = [
        Child(
            node,
            [
                *kube,
                "worker",
                "--name",
                node,
                "--runtime",
                options.runtime,
                "--log-level",
                options.log_level,
                "--metrics-port",
                str(options.metrics_port + i if options.metrics_port else 0),
                *(["--allow-exec"] if options.allow_exec else []),
            ],
        )
        for i, node in enumerate(options.nodes, start=1)
    ]
    return [*manager_children(options, db), *workers]


def manager_children(options: UpOptions, db: Path) -> list[Child]:
    """One manager named `manager`, or with `managers` of 2 or more, `manager-1`..N, each
    with `--name` of the same (how `kube managers` and the lease name it)."""
    store = ("--store", options.store) if options.store else ("--db", str(db))
    argv = [sys.executable, "-m", "kube", "manager", *store, "--scheduler", options.scheduler]
    argv += ["--secrets-key-file", str(secrets_key_path(options, db))]
    argv += ["--log-level", options.log_level]
    if options.managers < 2:
        return [Child("manager", [*argv, "--metrics-port", str(options.metrics_port)])]
    # the managers' /metrics, when asked for, take the ports after the workers'
    return [
        Child(
            name,
            [
                *argv,
                "--name",
                name,
                "--metrics-port",
                str(options.metrics_port + options.workers + i if options.metrics_port else 0),
            ],
        )
        for i, name in enumerate(manager_names(options.managers), start=1)
    ]


def secrets_key_path(options: UpOptions, db: Path) -> Path:
    """The secrets key of a local cluster (docs/secrets.md): $KUBE_SECRETS_KEY_FILE, or
    beside its SQLite file, or with --store in the state dir, where it outlives the
    cluster as the store does. `_run_cluster` makes it (mode 0600) if it is not there."""
    given = os.environ.get("KUBE_SECRETS_KEY_FILE")
    if given:
        return Path(given)
    return _kept_db().with_name("secrets.key") if options.store else db.with_name("secrets.key")


def manager_names(count: int) -> list[str]:
    return ["manager"] if count < 2 else [f"manager-{i}" for i in range(1, count + 1)]


def managers_problem(managers: int, store: str | None) -> str | None:
    """Why `--managers` cannot be run as given, in one line; None when it can. Standbys
    need a store that several managers share: PostgreSQL, never a SQLite file."""
    if managers < 1:
        return f"--managers must be 1 or more, not {managers}"
    if managers > 1 and (store is None or sqlite_path(store) is not None):
        return (
            f"--managers {managers} needs a PostgreSQL store that they share"
            " (--store postgresql://...): a SQLite file has one manager"
        )
    return None


def fatal_exits(cluster: LocalCluster, managers: int) -> dict[str, int]:
    """The children whose exit ends the cluster: any, with one manager; with standbys, a
    worker, or the last manager (a manager that dies is what a standby is for)."""
    dead = cluster.exited()
    names = manager_names(managers)
    if managers > 1 and not set(names) <= dead.keys():
        dead = {name: code for name, code in dead.items() if name not in names}
    return dead


class LeaderWatch:
    """Says which manager leads when `kube up` runs several, and when that changes."""

    def __init__(self, settings: Settings, cluster: LocalCluster) -> None:
        self.settings, self.cluster = replace(settings, request_timeout=2.0), cluster
        self.leader: tuple[str, int] | None = None
        self.reported: set[str] = set()
        self._next = 0.0

    def check(self) -> None:
        """Say what changed; asks the managers at most every WATCH_EVERY seconds."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + WATCH_EVERY
        dead = self.cluster.exited()
        for name in sorted(dead.keys() - self.reported):
            if name.startswith("manager"):
                self.cluster.say(f"{name} exited (code {dead[name]}); a standby takes over")
                self.reported.add(name)
        try:
            with Client(self.settings) as client:
                managers = client.managers()
        except KubeError as exc:  # none leads at this moment (a takeover under way)
            log.debug("kube up: no manager answers: %s", exc)
            return
        leading = [(m.name, m.epoch) for m in managers if m.role.value == "leader"]
        if not leading or leading[0] == self.leader:
            return
        self.leader = leading[0]
        standbys = [m.name for m in managers if m.role.value == "standby" and m.seen_ago < 3]
        self.cluster.say(
            f"{self.leader[0]} leads (epoch {self.leader[1]});"
            f" standby: {', '.join(standbys) or 'none'}"
        )


class BrokerAction(enum.Enum):
    """What to do when no broker answers."""

    START = "start"  # --start-broker, or the user said yes
    ASK = "ask"  # on a terminal: offer to start one
    EXPLAIN = "explain"  # say how to get one, and exit


def broker_action(*, start: bool, interactive: bool, local: bool, docker_ok: bool) -> BrokerAction:
    if not (local and docker_ok):
        return BrokerAction.EXPLAIN
    if start:
        return BrokerAction.START
    return BrokerAction.ASK if interactive else BrokerAction.EXPLAIN


def how_to_get_a_broker(settings: Settings, *, local: bool, docker_ok: bool) -> str:
    url = redact(settings.amqp_url)
    port = localbroker.BrokerAddress.of(settings).port  # the URL's, which may not be 5672
    lines = [f"no RabbitMQ answers at {url}."]
    if not local:
        lines.append("It is not on this machine: start it there, or set KUBE_AMQP_URL.")
    elif docker_ok:
        lines.append(
            f"Start one in Docker with `kube up --start-broker` (runs {localbroker.BROKER_IMAGE}),"
            f" or `docker run -d -p {port}:5672 {localbroker.BROKER_IMAGE}`,"
        )
        lines.append("or install it: `apt-get install rabbitmq-server` (Debian, Ubuntu).")
    else:
        lines.append(
            "No Docker engine answers either: install RabbitMQ (`apt-get install"
            " rabbitmq-server` on Debian and Ubuntu, or see rabbitmq.com/docs/download),"
            " or start Docker and run `kube up --start-broker`."
        )
    return "\n".join(lines)


@dataclass
class LocalCluster:
    """The running children, their output pumps, and how to stop them all."""

    settings: Settings
    children: list[Child]
    out: Sink
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pumps: list[threading.Thread] = field(default_factory=list)
    group: int | None = None

    def start(self, stopping: threading.Event | None = None) -> None:
        """Start the children, the manager first; a stop asked meanwhile (`stopping`)
        starts no more of them."""
        env = {**os.environ, "KUBE_AMQP_URL": self.settings.amqp_url}
        if self.settings.ca_file:
            env["KUBE_AMQP_CA"] = self.settings.ca_file
        width = max(len(child.name) for child in self.children)
        tie = die_with_parent()
        # Every child is forked before any pump thread starts: a preexec_fn is not safe
        # in a process that has threads (kube/lifeline.py).
        for child in self.children:
            if stopping is not None and stopping.is_set():
                break
            proc = subprocess.Popen(
                child.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # the first child leads a new group; the others join it
                process_group=0 if self.group is None else self.group,
                preexec_fn=tie,  # noqa: PLW1509 - no thread runs yet (see above)
            )
            if self.group is None:
                self.group = proc.pid
            self.procs[child.name] = proc
            self.say(f"started {child.name} (pid {proc.pid})")
        for child in self.children[: len(self.procs)]:
            pump = threading.Thread(
                target=self._pump,
                args=(child.name.rjust(width), self.procs[child.name]),
                daemon=True,
            )
            pump.start()
            self.pumps.append(pump)

    def say(self, line: str) -> None:
        self.out.line(f"kube up: {line}")

    def _pump(self, prefix: str, proc: subprocess.Popen[bytes]) -> None:
        """Show a child's lines; drain them even when nobody reads any more."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.out.line(f"{prefix} | {raw.decode(errors='replace').rstrip()}")

    def exited(self) -> dict[str, int]:
        return {
            name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None
        }

    def stop(self) -> dict[str, int]:
        """SIGTERM to the whole group, SIGKILL after the grace period; the exit codes."""
        if self.group is not None:
            _signal_group(self.group, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        if self.group is not None and any(p.poll() is None for p in self.procs.values()):
            self.say(f"children still running after {STOP_GRACE:g}s: killing them")
            _signal_group(self.group, signal.SIGKILL)
        codes = {name: proc.wait() for name, proc in self.procs.items()}
        for pump in self.pumps:
            pump.join(timeout=5)
        return codes


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # every member has exited already
        os.killpg(group, sig)


def remove_containers(nodes: Iterable[str] | None, cluster: str | None) -> int:
    """Force-remove every container of this cluster labelled with one of these node
    names (any node: None); how many. Another cluster's on the same engine (another
    `kube up`, on another vhost, has the same node names) is left alone; with no cluster
    id (its manager never opened its database), nothing is removed."""
    if cluster is None:
        return 0
    client = docker.from_env()
    removed = 0
    try:
        for node in [None] if nodes is None else nodes:
            labels = [f"{CLUSTER_LABEL}={cluster}"]
            if node is not None:
                labels.append(f"{NODE_LABEL}={node}")
            for container in client.containers.list(all=True, filters={"label": labels}):
                container.remove(force=True)
                removed += 1
    finally:
        client.close()
    return removed


def wait_ready(
    settings: Settings,
    cluster: LocalCluster,
    nodes: list[str],
    timeout: float,
    stopping: threading.Event,
    managers: int = 1,
) -> str | None:
    """Wait until every node is ready; None, or why the cluster is not coming up (a
    manager that dies while a standby remains is not a reason: `fatal_exits`)."""
    deadline = time.monotonic() + timeout
    quick = replace(settings, request_timeout=2.0)
    last = "the manager has not answered"
    with Client(quick) as client:
        while time.monotonic() < deadline:
            if stopping.is_set():
                return "stopped while starting"
            if dead := fatal_exits(cluster, managers):
                return "exited while starting: " + ", ".join(
                    f"{name} (code {code})" for name, code in dead.items()
                )
            try:
                ready = {n.name for n in client.nodes() if n.status.value == "ready"}
            except MessagingError as exc:  # the manager is not serving yet
                last = str(exc)
            else:
                if ready.issuperset(nodes):
                    return None
                last = f"ready: {sorted(ready & set(nodes)) or 'none yet'}"
            stopping.wait(0.3)
    return f"not ready after {timeout:g}s ({last})"


def up(
    options: UpOptions,
    settings: Settings,
    out: IO[str] = sys.stdout,
    ask: Callable[[str], str] = input,
    interactive: bool | None = None,
) -> int:
    """Run the local cluster until a stop signal or a closed output; the exit code."""
    interactive = sys.stdin.isatty() if interactive is None else interactive
    broker: str | None = None
    stopping = threading.Event()
    sink = Sink(out, on_gone=lambda _: stopping.set())
    # SIGINT interrupts already; the others unwind the same way while the broker boots
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    starting: RpcChannel | None = None
    try:
        try:
            broker = _ensure_broker(options, settings, sink, ask, interactive)
            starting = _starting(settings, options.ready_timeout + STOP_GRACE, sink)
            if broker is None and (holder := manager_running(settings)) is not None:
                print(f"kube up: {holder}", file=sys.stderr)
                return REFUSED
        except _Busy as exc:
            print(f"kube up: {exc}", file=sys.stderr)
            return REFUSED
        except (localbroker.LocalBrokerError, MessagingError, _NoBroker) as exc:
            print(f"kube up: {exc}", file=sys.stderr)
            return BROKER_DOWN
        except KeyboardInterrupt:  # a broker container being started was removed
            sink.line("kube up: stopped before the cluster started")
            return 0
        # From here to the end, a stop signal only asks to stop: a second one (or a
        # SIGHUP after Ctrl-C) never cuts the removal of what was started short.
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda *_: stopping.set())
        try:
            code = _run_cluster(options, settings, sink, stopping, started=starting.close)
        finally:
            if broker is not None and not options.keep:
                sink.line("kube up: removing the broker container")
                localbroker.remove_broker(broker)
    finally:
        if starting is not None:
            starting.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if sink.gone is Gone.PIPE_CLOSED:
        return PIPE_CLOSED
    if sink.gone is Gone.OTHER:  # e.g. a full disk: not a reader that chose to go
        error = sink.error.strerror if sink.error is not None else "unknown error"
        print(f"kube up: cannot write its output ({error}); stopped", file=sys.stderr)
        return FAILED
    return code


def manager_running(settings: Settings) -> str | None:
    """None, or a line naming the manager that already holds this vhost: a second one
    would only exit at once (one manager per vhost, manager/server.py)."""
    with RpcChannel(settings, name="kube-up") as channel:
        if not channel.held(topology.MANAGER_LOCK):
            return None
    nodes = ""
    try:
        with Client(replace(settings, request_timeout=2.0)) as client:
            names = [f"{n.name} ({n.status.value})" for n in client.nodes()]
        nodes = f", with node(s) {', '.join(names)}" if names else ", with no node"
    except MessagingError:  # it holds the lock but does not answer (yet): name it all the same
        pass
    return (
        f"a kube manager already runs on {redact(settings.amqp_url)}{nodes} (it holds"
        f" {topology.MANAGER_LOCK}); stop it (or the `kube up` that runs it), or give this"
        " cluster a vhost of its own in KUBE_AMQP_URL"
    )


def _starting(settings: Settings, wait: float, out: Sink) -> RpcChannel:
    """A connection that holds UP_LOCK while this `kube up` starts its cluster.

    Two `kube up` started at the same instant would both find no manager, and the second
    would see the first one's nodes ready and say so before its own manager gave up. The
    second waits here instead, then finds the first one's manager and refuses."""
    url = redact(settings.amqp_url)
    channel = RpcChannel(settings, name="kube-up-starting")
    try:
        deadline = time.monotonic() + wait
        held = channel.hold(topology.UP_LOCK)
        if not held:
            out.line(f"kube up: another kube up is starting a cluster on {url}: waiting for it")
        while not held:
            if time.monotonic() > deadline:
                raise _Busy(
                    f"another kube up has been starting a cluster on {url} for over"
                    f" {wait:g}s (it holds {topology.UP_LOCK}); stop it, or give this"
                    " cluster a vhost of its own in KUBE_AMQP_URL"
                )
            time.sleep(0.3)  # a stop signal raises KeyboardInterrupt here (see up)
            held = channel.hold(topology.UP_LOCK)
    except BaseException:
        channel.close()
        raise
    return channel


class _Busy(KubeError):
    """Another `kube up` is starting a cluster on the vhost, and has been for too long."""


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM while the broker boots: unwind as Ctrl-C does, removing what was started."""
    raise KeyboardInterrupt


class _NoBroker(KubeError):
    """No broker answers and none will be started."""


def _ensure_broker(
    options: UpOptions,
    settings: Settings,
    out: Sink,
    ask: Callable[[str], str],
    interactive: bool,
) -> str | None:
    """Check the broker, starting one if asked; the id of a container we started."""
    address = localbroker.BrokerAddress.of(settings)
    others = [localbroker.BrokerAddress.of_url(url) for url in settings.amqp_urls[1:]]
    if any(localbroker.listening(each) for each in [address, *others]):
        localbroker.check_broker(settings)  # a bad password or vhost says so here
        return None
    docker_ok = address.local and localbroker.docker_answers()
    action = broker_action(
        start=options.start_broker,
        interactive=interactive,
        local=address.local,
        docker_ok=docker_ok,
    )
    if action is BrokerAction.ASK:
        answer = ask(
            f"No RabbitMQ answers at {redact(settings.amqp_url)}. Start one in Docker"
            f" ({options.broker_image})? [y/N] "
        )
        action = BrokerAction.START if answer.strip().lower() in ("y", "yes") else action
    if action is not BrokerAction.START:
        raise _NoBroker(how_to_get_a_broker(settings, local=address.local, docker_ok=docker_ok))
    out.line(f"kube up: starting {options.broker_image} on port {address.port}")
    return localbroker.start_broker(settings, options.broker_image)


def _run_cluster(
    options: UpOptions,
    settings: Settings,
    out: Sink,
    stopping: threading.Event,
    started: Callable[[], None] = lambda: None,
) -> int:
    """Start the children, wait for them, and stop them all at the end; `started` is
    called once the cluster is ready or is not coming up (another `kube up` may start)."""
    with leftovers.scratch() as scratch:
        leftovers.mark(Path(scratch), options.runtime)
        db = options.db or (_kept_db() if options.keep else Path(scratch) / "manager.db")
        made = create_key_file(key := secrets_key_path(options, db))
        if made and (options.keep or options.store or options.db):  # a scratch one goes with it
            out.line(f"kube up: made the secrets key {key} (mode 0600; keep it with the store)")
        cluster = LocalCluster(settings, plan(options, db), out)
        code = OK
        try:
            _remove_leftovers(cluster, options, settings)
            cluster.start(stopping)
            problem = wait_ready(
                settings, cluster, options.nodes, options.ready_timeout, stopping, options.managers
            )
            started()
            if problem is not None and not stopping.is_set():
                cluster.say(problem)
                # another manager took the vhost since manager_running() looked
                code = REFUSED if cluster.exited().get("manager") == REFUSED else FAILED
            elif problem is None:
                image = try_image(options.runtime)
                _say_ready(cluster, options, settings, image, Path(scratch) / "broker-url")
                watch = LeaderWatch(settings, cluster) if options.managers > 1 else None
                while not stopping.wait(0.5):
                    if watch is not None:
                        watch.check()
                    if dead := fatal_exits(cluster, options.managers):
                        cluster.say(f"{', '.join(dead)} exited; stopping the rest")
                        code = FAILED
                        break
        finally:
            cluster.say("stopping")
            codes = cluster.stop()
            if options.keep:
                state = "the --store database" if options.store else db
                cluster.say(f"kept the containers of {', '.join(options.nodes)}; state in {state}")
            elif options.runtime == "docker":
                try:
                    removed = remove_containers(options.nodes, read_cluster_id(options.store or db))
                    cluster.say(f"removed {removed} task container(s)")
                except docker.errors.DockerException as exc:
                    cluster.say(f"could not remove the task containers: {exc}")
                    code = FAILED
        bad = {name: c for name, c in codes.items() if c not in (0, -signal.SIGTERM)}
        if options.managers > 1 and code == OK:  # a manager a standby took over from
            bad = {n: c for n, c in bad.items() if n not in manager_names(options.managers)}
        if bad and code == OK:
            cluster.say(f"exit codes: {bad}")
            code = FAILED
        return code


def _remove_leftovers(cluster: LocalCluster, options: UpOptions, settings: Settings) -> None:
    """Remove what `kube up` processes killed outright left: their temporary folders and,
    named by the database in each, their task containers and the dispatches they left
    in their nodes' queues (kube/leftovers.py). The containers of a dead `kube up` that
    ran on Docker are removed whatever runtime this one runs; when the engine cannot be
    reached, the folder is kept (it names the cluster) for the next `kube up` to try."""
    for folder in leftovers.stale():
        cluster_id = read_cluster_id(folder / "manager.db")
        containers = ""
        if cluster_id is not None:
            nodes = set(options.nodes)
            if leftovers.runtime(folder) == "docker":
                try:
                    nodes |= labelled_nodes(cluster_id)
                    containers = f" and {remove_containers(None, cluster_id)} task container(s)"
                except docker.errors.DockerException as exc:
                    drop_dispatches(settings, cluster_id, nodes)
                    cluster.say(
                        f"kept {folder}, what a killed kube up left: could not remove the task"
                        f" containers of its cluster {cluster_id} ({exc}); the next kube up"
                        " tries again"
                    )
                    continue
            # the dispatches, which a worker of the same name would run again
            drop_dispatches(settings, cluster_id, nodes)
        leftovers.remove(folder)
        cluster.say(f"removed what a killed kube up left: {folder}{containers}")


def labelled_nodes(cluster_id: str) -> set[str]:
    """The node names on the containers of a cluster (their NODE_LABEL)."""
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{CLUSTER_LABEL}={cluster_id}"})
        return {c.labels[NODE_LABEL] for c in found if NODE_LABEL in c.labels}
    finally:
        client.close()


def drop_dispatches(settings: Settings, cluster_id: str, nodes: Iterable[str]) -> int:
    """Take out of the nodes' queues the dispatches of a dead cluster; how many. A task's
    dispatch stays unacknowledged while its container runs and comes back when its worker
    dies: a worker of the same name, started later, would run it again, in the dead
    cluster's name. A queue a worker reads is left alone (shared/rpc.py's drop)."""

    def stale(body: bytes) -> bool:
        try:
            return bool(json.loads(body).get("cluster") == cluster_id)
        except (ValueError, AttributeError):  # not a dispatch of ours: kept
            return False

    with RpcChannel(settings, name="kube-up") as channel:
        return sum(channel.drop(topology.node_queue(node), stale) for node in sorted(nodes))


def _kept_db() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(state) / "kube" / "up.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def try_image(runtime: str) -> str | None:
    """A busybox image the engine holds, for the hint to try; None if it has none."""
    if runtime == "mock":
        return "busybox"  # the mock runs any image
    from worker.runtime.docker import DockerRuntime

    try:
        engine = DockerRuntime("kube-up")
        return next((i for i in ("busybox", LOCAL_BUSYBOX) if engine.has_image(i)), None)
    except RuntimeFailure as exc:
        log.warning("kube up: cannot tell which images the engine holds: %s", exc)
        return None


def broker_env(settings: Settings, url_file: Path | None = None) -> str:
    """What a command pasted in another terminal needs before it to reach this cluster's
    broker: nothing for the default URL. A password is never shown (this output may be
    shared, or sit in a scrollback): the URL is written to `url_file`, readable by this
    user alone and removed with the temporary folder, and the command reads it from there
    (`KUBE_AMQP_URL="$(cat /tmp/kube-up-.../broker-url)"`); without a file, the password
    is shown as *** and the reader puts theirs in."""
    env = ""
    if settings.amqp_url != DEFAULT_AMQP_URL:
        if urlsplit(settings.amqp_urls[0]).password is None:
            env = f"KUBE_AMQP_URL={shlex.quote(settings.amqp_url)} "
        elif url_file is not None:
            descriptor = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(settings.amqp_url)
            env = f'KUBE_AMQP_URL="$(cat {shlex.quote(str(url_file))})" '
        else:
            env = f"KUBE_AMQP_URL={shlex.quote(redact(settings.amqp_url))} "
    if settings.ca_file:
        env += f"KUBE_AMQP_CA={shlex.quote(settings.ca_file)} "
    return env


def _say_ready(
    cluster: LocalCluster,
    options: UpOptions,
    settings: Settings,
    image: str | None,
    url_file: Path | None = None,
) -> None:
    cluster.say(
        f"manager and {options.workers} worker(s) ready on {redact(settings.amqp_url)}:"
        f" {', '.join(options.nodes)}"
    )
    if image is None:
        cluster.say(
            f"the engine has no busybox image: build one with `{BUILD_BUSYBOX}`"
            f" ({LOCAL_BUSYBOX}, no registry needed), then"
        )
        image = LOCAL_BUSYBOX
    env = broker_env(settings, url_file)
    cluster.say(
        f"try `{env}kube run --name hello --image {image} --wait -- echo hello`, `{env}kube ps`"
    )
    keep = "leaves them" if options.keep else "removes their containers"
    cluster.say(f"Ctrl-C stops them all and {keep}")
