"""Test hosts: network namespaces with their own address and Docker engine, on one bridge.

A `Bed` is one test's machines. The root namespace is the host of the broker and the
manager, at the bridge's address; each `Host` is a namespace with an address of its own
and, unless asked otherwise, a Docker engine of its own with the local test image loaded.
A host runs processes (`spawn`, `run`) inside its namespace with DOCKER_HOST naming its
engine, and can be cut off the network and healed. See docs/testing.md.

Everything a bed makes is named by its id and recorded under `/tmp/kube-hosts/<id>/`,
whose `lock` the owning process holds (flock) while it lives: a bed whose lock is free
belongs to a run that was killed, and the next bed removes it before it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import docker
import docker.models.containers

from tests.support import network
from tests.support.engines import (
    Engine,
    kill_namespace_processes,
    remove_cgroups,
    stop_engine,
    unmount_under,
)
from tests.support.network import NETNS_DIR, Bridge, sh

BEDS_DIR = Path("/tmp/kube-hosts")
IMAGES_DIR = BEDS_DIR / "images"
ROOT = Path(__file__).resolve().parents[2]
RABBITMQCTL_NO_SUCH_USER = 67  # delete_user's exit code for a user that is not there
STOP_GRACE = 10.0  # seconds a spawned process has to exit on SIGTERM
CONNECT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
"""


class Host:
    """A machine of the bed: a network namespace, its address, maybe its own engine."""

    def __init__(self, bed_id: str, index: int, netns: str, address: str, root: Path) -> None:
        self.bed_id = bed_id
        self.index = index
        self.netns = netns
        self.address = address
        self.root = root
        self.engine: Engine | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self._client: docker.DockerClient | None = None

    def __repr__(self) -> str:
        return f"Host({self.netns}, {self.address})"

    @property
    def docker_host(self) -> str:
        """DOCKER_HOST for this host's engine."""
        if self.engine is None:
            raise AssertionError(f"{self} has no engine (made with engine=False)")
        return self.engine.url

    def prefix(self, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """The command prefix that runs a program here, with DOCKER_HOST and env set:
        `nsenter --net=... env K=V ...`, for helpers that take one (Cluster.start)."""
        settings = {**({"DOCKER_HOST": self.docker_host} if self.engine else {}), **(env or {})}
        pairs = (f"{key}={value}" for key, value in settings.items())
        return ("nsenter", f"--net={NETNS_DIR / self.netns}", "env", *pairs)

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, log: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process here (killed at teardown); its output goes to `<log>.log` in the
        host's directory (the argv's program name if not given)."""
        path = self.root / f"{log or Path(argv[0]).name}.log"
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                [*self.prefix(env), *argv], stdout=out, stderr=out, cwd=ROOT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a command here to its end; its output captured."""
        return subprocess.run(
            [*self.prefix(env), *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )

    def connects(self, address: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from this host to address:port opens within timeout."""
        argv = [sys.executable, "-c", CONNECT, address, str(port), str(timeout)]
        done = self.run(argv, timeout=timeout + 10)
        return done.returncode == 0

    def fetch(self, url: str, timeout: float = 5.0) -> str | None:
        """The body of an HTTP GET from this host, or None when nothing answers."""
        done = self.run(["curl", "--silent", "--max-time", str(timeout), url], timeout=timeout + 10)
        return done.stdout if done.returncode == 0 else None

    def docker(self) -> docker.DockerClient:
        """A docker SDK client of this host's engine (closed at teardown)."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.docker_host)
        return self._client

    def containers(self, running: bool = False) -> list[docker.models.containers.Container]:
        """The containers in this host's engine, or only its running ones."""
        return list(self.docker().containers.list(all=not running, ignore_removed=True))

    def cut(self) -> None:
        """Cut this host off: its link goes down, nothing passes either way, no reset is sent."""
        network.set_link(self.bed_id, self.index, up=False)

    def heal(self) -> None:
        network.set_link(self.bed_id, self.index, up=True)

    def stop_processes(self) -> list[str]:
        """SIGTERM what spawn() started, SIGKILL after STOP_GRACE; what had to be killed."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        problems = []
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                problems.append(f"{proc.args!r} ignored SIGTERM for {STOP_GRACE}s; killed")
        self.procs.clear()
        if self._client is not None:
            self._client.close()
            self._client = None
        return problems


class Bed:
    """One test's hosts, their bridge and a broker user of its own; see the module doc."""

    def __init__(self, vhost_url: str, image: str | None = None) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.root = BEDS_DIR / self.id
        self.vhost = urlsplit(vhost_url).path.lstrip("/")
        self.image = image
        self.user = f"kube-hosts-{self.id}"
        self.password = secrets.token_hex(12)
        self.hosts: list[Host] = []
        self.bridge: Bridge | None = None
        self._lock: IO[bytes] | None = None

    @property
    def broker_address(self) -> str:
        """Where hosts reach the broker (and the manager's host): the bridge's address."""
        assert self.bridge is not None, "the bed is not started"
        return self.bridge.address

    def url(self, address: str | None = None) -> str:
        """The AMQP URL of the test's vhost as the bed's user, at address (default: the
        bridge address, for hosts; the root namespace itself uses 127.0.0.1)."""
        return (
            f"amqp://{self.user}:{self.password}@{address or self.broker_address}:"
            f"{network.BROKER_PORT}/{self.vhost}"
        )

    def start(self) -> None:
        BEDS_DIR.mkdir(exist_ok=True)
        with beds_lock():
            sweep_stale()
            self.root.mkdir()
            self._lock = open(self.root / "lock", "wb")  # noqa: SIM115 - held until close()
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.bridge = Bridge(self.id, network.free_subnet())
            self.bridge.create()
        (self.root / "user").write_text(self.user)
        rabbitmqctl("add_user", self.user, self.password)
        rabbitmqctl("set_permissions", "-p", self.vhost, self.user, ".*", ".*", ".*")

    def add_hosts(self, count: int, engine: bool = True) -> list[Host]:
        """`count` more hosts; with engine, each runs its own dockerd (started together)
        with the bed's image loaded."""
        assert self.bridge is not None, "the bed is not started"
        added = []
        for _ in range(count):
            index = len(self.hosts) + 1
            (self.root / f"h{index}").mkdir()  # first: a killed run's sweep finds the host by it
            netns, address = self.bridge.add_host(index)
            host = Host(self.id, index, netns, address, self.root / f"h{index}")
            self.hosts.append(host)
            added.append(host)
            if engine:
                host.engine = Engine(netns, host.root, f"kube-hosts-{self.id}-{index}")
                host.engine.start()
        archive = saved_image(self.image) if engine and self.image else None
        for host in added:
            if host.engine is not None:
                host.engine.ready()
                if archive is not None:
                    host.engine.load(archive)
        return added

    def logs(self) -> str:
        """The tail of every log of the bed's hosts (engines, spawned processes)."""
        return "\n".join(
            f"----- {path.relative_to(self.root)}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.root.glob("h*/*.log"))
        )

    def close(self) -> None:
        """Remove everything the bed made; raise, after all of it was tried, if any failed.

        A Ctrl-C meanwhile is held until the bed is gone (a second one too: it takes
        seconds), then raised."""
        with sigint_deferred():
            self._remove()

    def _remove(self) -> None:
        problems = [p for host in self.hosts for p in host.stop_processes()]
        problems += remove_bed(self.root)
        for host in self.hosts:
            if host.engine is not None and host.engine.proc is not None:
                host.engine.proc.wait(10)  # stopped by remove_bed; reaped here
        if self._lock is not None:
            self._lock.close()
        if problems:
            raise AssertionError("the test bed was not removed cleanly:\n" + "\n".join(problems))


@contextlib.contextmanager
def running_bed(vhost_url: str, image: str | None = None) -> Iterator[Bed]:
    """A started Bed, removed after, also when the test fails or is interrupted."""
    bed = Bed(vhost_url, image)
    try:
        bed.start()
        yield bed
    finally:
        bed.close()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold SIGINT while the block runs, then raise KeyboardInterrupt if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def missing_tools() -> list[str]:
    """What this machine lacks to make hosts: root, and the tools the bed runs."""
    tools = ("ip", "nsenter", "dockerd", "docker", "iptables", "curl", "rabbitmqctl")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return missing if os.geteuid() == 0 else ["root", *missing]


@contextlib.contextmanager
def beds_lock() -> Iterator[None]:
    """Held while a bed picks its subnet and names, and while stale beds are removed."""
    with open(BEDS_DIR / ".lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sweep_stale() -> None:
    """Remove every bed whose owner is gone (its lock is free); the caller holds beds_lock."""
    for root in sorted(BEDS_DIR.iterdir()):
        if root == IMAGES_DIR or not root.is_dir() or root.name.startswith("."):
            continue
        with open(root / "lock", "ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live bed of another run
            problems = remove_bed(root)
        if problems:
            raise AssertionError(
                f"a stale test bed {root} could not be removed:\n" + "\n".join(problems)
            )


def remove_bed(root: Path) -> list[str]:
    """Stop a bed's engines, kill what runs in its namespaces, remove cgroups, mounts,
    namespaces, bridge, rules, broker user and files; what failed, for the caller to report."""
    if not root.exists():
        return []  # the bed failed before it made anything
    bed_id = root.name
    hosts = sorted(p for p in root.glob("h*") if p.is_dir())
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        problems = [p for found in pool.map(stop_engine, hosts) for p in found]
    for host in hosts:
        index = int(host.name[1:])
        kill_namespace_processes(network.netns_name(bed_id, index))
        problems += remove_cgroups(f"kube-hosts-{bed_id}-{index}")
    problems += unmount_under(root)
    problems += network.remove(bed_id)
    user_file = root / "user"
    if user_file.exists():
        done = sh("rabbitmqctl", "-q", "delete_user", user_file.read_text().strip(), check=False)
        if done.returncode in (0, RABBITMQCTL_NO_SUCH_USER):
            user_file.unlink()
        else:
            problems.append(f"rabbitmqctl delete_user: {done.stderr.strip()}")
    if not problems:
        shutil.rmtree(root)
    return problems


def rabbitmqctl(*args: str) -> None:
    sh("rabbitmqctl", "-q", *args)


def saved_image(image: str) -> Path:
    """The image as a `docker save` archive of the machine's engine, made once per image id."""
    image_id = sh("docker", "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    archive = IMAGES_DIR / f"{image_id.removeprefix('sha256:')}.tar"
    if not archive.exists():
        partial = archive.with_suffix(f".{os.getpid()}.part")
        sh("docker", "save", "--output", str(partial), image)
        partial.rename(archive)  # atomic: a concurrent run sees the whole archive or none
    return archive
