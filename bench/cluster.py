"""A throwaway kube cluster for one benchmark: a vhost, a manager and workers as processes.

Everything is torn down on exit, in reverse: the processes (SIGTERM, then SIGKILL), the
containers labelled with this cluster's node names, the vhost (with every queue in it)
and the working directory with the manager's database and the process logs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

from bench.report import ROOT, progress

AMQP_HOST = os.environ.get("KUBE_BENCH_AMQP_HOST", "127.0.0.1:5672")
NODE_LABEL = "kube.node"  # the label the Docker runtime puts on every container


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `with Cluster()` cleans up as on Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    """A TCP port nothing listens on now, for a process's /metrics."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ROUND_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    TimeoutError,
    subprocess.SubprocessError,
)
"""What one benchmark round fails with when the broker or a process goes away."""


def rabbitmqctl(*args: str, attempts: int = 6) -> None:
    """Run rabbitmqctl, retrying for about a minute while the broker restarts."""
    for attempt in range(1, attempts + 1):
        try:
            subprocess.run(
                ["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60
            )
            return
        except subprocess.CalledProcessError as exc:
            output = (exc.stdout or b"") + (exc.stderr or b"")
            if args[0] == "delete_vhost" and b"does not exist" in output:
                return
            if attempt == attempts:
                raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {output.decode()}") from exc
        except subprocess.TimeoutExpired:
            if attempt == attempts:
                raise
        time.sleep(2 * attempt)


def remove_containers(label_value: str) -> int:
    """Force-remove every container labelled kube.node=label_value; how many there were."""
    import docker  # only benchmarks that use the engine need it

    client = docker.from_env()
    try:
        containers = client.containers.list(
            all=True, filters={"label": f"{NODE_LABEL}={label_value}"}, ignore_removed=True
        )

        def remove(container: Any) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, containers))
        return len(containers)
    finally:
        client.close()


class Broker(Protocol):
    """Where a cluster's vhost lives: the system broker, or local nodes of a RabbitMQ
    cluster (tests/support/rabbit_cluster.py)."""

    def url(self, vhost: str) -> str:
        """KUBE_AMQP_URL for the vhost: one URL, or several separated by commas."""
        ...

    def add_vhost(self, vhost: str) -> None: ...

    def delete_vhost(self, vhost: str) -> None: ...


class SystemBroker:
    """The machine's RabbitMQ at AMQP_HOST, administered with rabbitmqctl."""

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@{AMQP_HOST}/{vhost}"

    def add_vhost(self, vhost: str) -> None:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        rabbitmqctl("delete_vhost", vhost)


class Cluster:
    """A vhost of its own and kube processes on it; a context manager that cleans up."""

    def __init__(self, keep: bool = False, broker: Broker | None = None) -> None:
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}"
        self.vhost = self.prefix
        self.broker = broker or SystemBroker()
        self.url = self.broker.url(self.vhost)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"kube-{self.prefix}-"))
        self.keep = keep
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.docker_nodes: set[str] = set()
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Cluster:
        try:
            self.broker.add_vhost(self.vhost)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node(self, index: int) -> str:
        """The name of this cluster's index-th worker."""
        return f"{self.prefix}-node-{index}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBE_AMQP_URL": self.url, "PYTHONPATH": str(ROOT)}

    def start(self, name: str, *args: str, url: str | None = None) -> subprocess.Popen[bytes]:
        """Start `kube ARGS` as a process named name, logging to the working directory;
        on the broker(s) of `url` if given, else of the cluster's."""
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kube", *args],
            env={**self.env, "KUBE_AMQP_URL": url or self.url},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            # Its own session: a Ctrl-C on the benchmark does not reach the processes,
            # which close() stops in order.
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_manager(
        self, *extra: str, store: str | None = None, url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """The manager, on `store` (a store URL) or a SQLite file in the working directory;
        on the broker(s) of `url` if given."""
        return self.start(
            "manager",
            "manager",
            *(("--store", store) if store else ("--db", str(self.workdir / "manager.db"))),
            "--log-level",
            "WARNING",
            "--metrics-port",
            str(free_port()),
            *extra,
            url=url,
        )

    def start_worker(
        self, name: str, runtime: str, *extra: str, url: str | None = None
    ) -> subprocess.Popen[bytes]:
        if runtime == "docker":
            self.docker_nodes.add(name)
        return self.start(
            name,
            "worker",
            "--name",
            name,
            "--runtime",
            runtime,
            "--log-level",
            "WARNING",
            # Metrics stay on, as by default, on a port of each process's own.
            "--metrics-port",
            str(free_port()),
            *extra,
            url=url,
        )

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process and forget it once it is gone."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(30)

    def wait_ready(self, nodes: list[str], timeout: float = 120.0) -> None:
        """Block until the manager answers and lists every node as ready."""
        from kube.client import Client
        from shared.errors import KubeError
        from shared.settings import Settings

        deadline = time.monotonic() + timeout
        wanted = set(nodes)
        ready: set[str] = set()
        with Client(Settings(amqp_url=self.url, request_timeout=5)) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    ready = {n.name for n in client.nodes() if n.status.value == "ready"}
                except KubeError:
                    ready = set()
                if wanted <= ready:
                    return
                time.sleep(0.2)
        raise TimeoutError(f"nodes not ready after {timeout:g}s: {sorted(wanted - ready)}")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, size: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def close(self) -> None:
        """Stop every process, remove this cluster's containers, vhost and files."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                progress("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait(15)
        self.procs.clear()
        for log in self._logs:
            log.close()
        for node in sorted(self.docker_nodes):
            removed = remove_containers(node)
            if removed:
                progress("removed %d containers of %s", removed, node)
        try:
            self.broker.delete_vhost(self.vhost)
        except ROUND_ERRORS as exc:
            progress("could not delete vhost %s: %s", self.vhost, exc)
        if self.keep:
            progress("kept %s", self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
