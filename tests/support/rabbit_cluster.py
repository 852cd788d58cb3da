"""A RabbitMQ cluster of three local nodes of its own, beside the system broker.

Each node is a `rabbitmq-server` run directly (not through the Debian wrapper, which
switches to the rabbitmq user and its HOME), with its own node name
(`kubetest<pid>n<i>@localhost`), AMQP and distribution ports, data and log directories, an
empty plugin list (the system node's Prometheus plugin would fight over port 15692) and an
Erlang cookie of its own in a HOME of its own: the system node on 5672 and its cookie are
never touched. Nodes 2 and 3 join node 1; a quorum queue declared afterwards gets a member on
each of them.

`rabbitmq-server` is a shell script that runs the Erlang VM as its child: each node is
started in a process group of its own, and killed as a group.

Everything lives under ROOT/<pid of the test process>: a run that was killed leaves its
nodes running and its directory behind, and the next `RabbitCluster.start()` sweeps both
(`sweep`), finding the nodes' processes by the RABBITMQ_NODENAME in their environment
(the node name is not on the VM's command line), which carries the test process's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/tmp/kube-rabbit-cluster")
NODE_PREFIX = "kubetest"
NODE_NAME = re.compile(rf"^RABBITMQ_NODENAME={NODE_PREFIX}(\d+)n\d+@localhost$", re.M)
START_TIMEOUT = 90.0


class ClusterError(RuntimeError):
    """The local nodes could not be started, clustered or stopped; the message says how."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rabbit_bin() -> Path:
    """The directory of the real rabbitmq-server and rabbitmqctl scripts."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise ClusterError("rabbitmqctl is not on PATH: install rabbitmq-server (.ci/run does)")
    # /usr/sbin/rabbitmqctl is a link to a wrapper beside the real scripts
    return Path(ctl).resolve().parent


@dataclass
class Node:
    """One local RabbitMQ node: its name, ports and directory."""

    index: int
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    def url(self, vhost: str, user: str = "guest", password: str = "guest") -> str:
        quoted = urllib.parse.quote(vhost, safe="")
        return f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/{quoted}"

    def answers(self) -> bool:
        """Whether the node's AMQP port accepts connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=0.5):
                return True
        except OSError:
            return False


@dataclass
class RabbitCluster:
    """Three (or `size`) clustered local nodes; start() them, close() them."""

    size: int = 3
    home: Path = field(default_factory=lambda: ROOT / str(os.getpid()))
    nodes: list[Node] = field(default_factory=list)
    started_in: float | None = None
    """Seconds start() took: nodes up and clustered."""

    def __post_init__(self) -> None:
        self._bin = rabbit_bin()
        self.nodes = [
            Node(
                index,
                f"{NODE_PREFIX}{os.getpid()}n{index}@localhost",
                free_port(),
                free_port(),
                self.home / f"n{index}",
            )
            for index in range(1, self.size + 1)
        ]

    # -- life ----------------------------------------------------------------------------

    def start(self) -> RabbitCluster:
        """Start every node, cluster them on node 1; stop them all again if that fails."""
        began = time.monotonic()
        sweep()
        try:
            self._prepare()
            for node in self.nodes:
                self._launch(node)
            for node in self.nodes:
                self._await(node)
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", self.nodes[0].name)
                self.ctl(node, "start_app")
            running = self.running_nodes()
            if running != {node.name for node in self.nodes}:
                raise ClusterError(f"the cluster runs {sorted(running)}, not all {self.size} nodes")
        except BaseException:
            self.close()
            raise
        self.started_in = time.monotonic() - began
        return self

    def close(self) -> None:
        """Shut every node down (killing what does not stop) and remove their files."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self._shut_down, self.nodes))
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one node at a time ---------------------------------------------------------------

    def stop_app(self, node: Node) -> None:
        """Stop RabbitMQ on the node (its Erlang VM stays up): clients are disconnected."""
        self.ctl(node, "stop_app")

    def start_app(self, node: Node) -> None:
        """Start RabbitMQ again on a node stopped with stop_app; return once it serves."""
        self.ctl(node, "start_app")
        self.ctl(node, "await_startup")

    def kill(self, node: Node) -> None:
        """SIGKILL the node's Erlang VM, as a crash of its machine would end it."""
        if node.proc is not None:
            _kill_group(node.proc)

    def restart(self, node: Node) -> None:
        """Start a killed node again; return once it serves and is back in the cluster."""
        self._launch(node)
        self._await(node)
        deadline = time.monotonic() + START_TIMEOUT
        while node.name not in self.running_nodes(via=node):
            if time.monotonic() > deadline:
                raise ClusterError(f"node {node.name} did not rejoin in {START_TIMEOUT:g}s")
            time.sleep(0.5)

    # -- questions -----------------------------------------------------------------------

    def urls(self, vhost: str, first: int = 0) -> list[str]:
        """The nodes' URLs for `vhost`, beginning with node `first` (0-based) and wrapping."""
        order = self.nodes[first:] + self.nodes[:first]
        return [node.url(vhost) for node in order]

    def url(self, vhost: str, first: int = 0) -> str:
        """KUBE_AMQP_URL for `vhost`: the nodes' URLs (`urls`) separated by commas."""
        return ",".join(self.urls(vhost, first))

    def add_vhost(self, vhost: str) -> None:
        self.ctl(self.nodes[0], "add_vhost", vhost)
        self.ctl(self.nodes[0], "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self.ctl(self.nodes[0], "delete_vhost", vhost)

    def running_nodes(self, via: Node | None = None) -> set[str]:
        out = self.ctl(via or self.nodes[0], "cluster_status", "--formatter", "json")
        return set(json.loads(out)["running_nodes"])

    def queues(self, vhost: str, via: Node | None = None) -> dict[str, tuple[str, set[str]]]:
        """Each queue of `vhost`: its type and the nodes of its members (quorum, stream)."""
        out = self.ctl(
            via or self.nodes[0],
            "list_queues",
            "-p",
            vhost,
            "name",
            "type",
            "members",
            "--formatter",
            "json",
        )
        return {
            row["name"]: (str(row["type"]), set(row.get("members") or ()))
            for row in json.loads(out)
        }

    def connected_to(self, vhost: str) -> dict[str, set[int]]:
        """Each client connection name on `vhost`: the AMQP ports (nodes) it is connected to."""
        out = self.ctl(
            self.nodes[0],
            "list_connections",
            "port",
            "vhost",
            "client_properties",
            "--formatter",
            "json",
        )
        found: dict[str, set[int]] = {}
        for row in json.loads(out):
            properties = {item[0]: item[2] for item in row.get("client_properties") or ()}
            if row.get("vhost") == vhost and "connection_name" in properties:
                found.setdefault(str(properties["connection_name"]), set()).add(row["port"])
        return found

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        """Run rabbitmqctl against `node`; its output, or ClusterError saying what failed."""
        done = subprocess.run(
            [str(self._bin / "rabbitmqctl"), "-q", "-n", node.name, *args],
            env=self._env(node),
            cwd=node.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({done.returncode}):"
                f" {(done.stderr or done.stdout).strip()[-800:]}"
            )
        return done.stdout

    def log(self, node: Node, size: int = 4000) -> str:
        path = node.base / "log" / f"{node.name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    # -- internals -----------------------------------------------------------------------

    def _prepare(self) -> None:
        home = self.home / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        for node in self.nodes:
            node.base.mkdir(parents=True, exist_ok=True)
            (node.base / "enabled_plugins").write_text("[].\n")
            (node.base / "rabbitmq-env.conf").write_text("")
            (node.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
                "loopback_users = none\n"
                # the nodes share one small machine with the system broker
                "vm_memory_high_watermark.relative = 0.2\n"
                "disk_free_limit.absolute = 50MB\n"
            )

    def _env(self, node: Node) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **keep,
            "HOME": str(self.home / "home"),  # where Erlang reads the cookie
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(node.base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": str(node.base / "erl_crash.dump"),
        }

    def _launch(self, node: Node) -> None:
        out = open(node.base / "stdout.log", "ab")  # noqa: SIM115 - closed with the node
        node.proc = subprocess.Popen(
            [str(self._bin / "rabbitmq-server")],
            env=self._env(node),
            cwd=node.base,  # where a VM that fails writes its crash dumps
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # a group of its own, to be killed as one (the script forks the VM); and Ctrl-C
            # in the test's terminal is not for the nodes
            start_new_session=True,
        )
        out.close()

    def _await(self, node: Node) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not node.answers():
            if node.proc is not None and node.proc.poll() is not None:
                raise ClusterError(
                    f"node {node.name} exited ({node.proc.returncode}) while starting:"
                    f" {self.log(node, 1500) or (node.base / 'stdout.log').read_text()[-1500:]}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(f"node {node.name} did not serve AMQP in {START_TIMEOUT:g}s")
            time.sleep(0.2)
        self.ctl(node, "await_startup")

    def _shut_down(self, node: Node) -> None:
        proc = node.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            self.ctl(node, "shutdown", timeout=30)
            proc.wait(10)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            print(f"node {node.name} did not shut down ({exc}); killing it")
        _kill_group(proc)  # whatever is left of it: the VM, its helpers


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group a node was started in (the script and the VM under it)."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def sweep(root: Path = ROOT) -> list[int]:
    """Kill the nodes of test runs that are gone and remove their directories; their pids.

    A node's name carries the pid of the test process that started it (`NODE_NAME`); a
    node whose test process no longer exists is a leftover of a killed run."""
    killed = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            environ = (proc_dir / "environ").read_bytes().replace(b"\0", b"\n").decode()
            command = (proc_dir / "comm").read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        match = NODE_NAME.search(environ)
        # epmd may have been started by one of our nodes, but serves every node here
        if match is None or command == "epmd" or _alive(int(match.group(1))):
            continue
        try:
            os.kill(int(proc_dir.name), signal.SIGKILL)
            killed.append(int(proc_dir.name))
        except ProcessLookupError:
            continue
    if root.exists():
        for run in root.iterdir():
            if run.name.isdigit() and not _alive(int(run.name)):
                shutil.rmtree(run, ignore_errors=True)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def missing_members(
    queues: dict[str, tuple[str, set[str]]], nodes: Sequence[Node]
) -> dict[str, set[str]]:
    """The quorum queues among `queues` that lack a member on some node: name -> missing."""
    names = {node.name for node in nodes}
    return {
        name: names - members
        for name, (kind, members) in queues.items()
        if kind == "quorum" and names - members
    }
