"""Runtimes under test, each with task specs that behave alike on it: the contract suite
and the worker's tests run once per runtime. Every container a Docker runtime made is
force-removed at teardown, even when the test failed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.bus import StubBus
from shared.models import PullPolicy, TaskSpec
from shared.settings import Settings
from tests.support.dispatches import sent
from tests.support.images import BUSYBOX_IMAGE
from tests.support.waiting import wait_for
from worker.config import WorkerConfig
from worker.policy import WorkerPolicy
from worker.runtime.base import NODE_LABEL, Runtime
from worker.runtime.docker import DockerRuntime
from worker.runtime.mock import EXIT_CODE_ENV, OUTPUT_ENV, RUN_SECONDS_ENV, MockRuntime
from worker.service import Worker
from worker.stats import Capacity

# Runs until stopped, and leaves on SIGTERM at once with 143, as the mock's remove reports.
UNTIL_STOPPED = "trap 'exit 143' TERM; sleep 300 & wait"


@dataclass
class RuntimeKit:
    """A runtime and specs with the same behaviour on it, whichever engine it drives."""

    kind: str  # "mock" or "docker"
    runtime: Runtime
    node: str

    def spec(self, name: str = "probe", **fields: Any) -> TaskSpec:
        if self.kind == "docker":
            fields.setdefault("pull_policy", PullPolicy.NEVER)
            return TaskSpec(name=name, image=BUSYBOX_IMAGE, **fields)
        return TaskSpec(name=name, image="busybox", **fields)

    def running(self, **fields: Any) -> TaskSpec:
        """A container that runs until removed."""
        if self.kind == "docker":
            return self.spec(command=("sh", "-c", UNTIL_STOPPED), **fields)
        return self.spec(**fields)

    def exiting(self, code: int, **fields: Any) -> TaskSpec:
        """A container that exits soon with `code`."""
        if self.kind == "docker":
            return self.spec(command=("sh", "-c", f"exit {code}"), **fields)
        env = {RUN_SECONDS_ENV: "0.05", EXIT_CODE_ENV: str(code)}
        return self.spec(env=env, **fields)

    def printing(self, text: str) -> TaskSpec:
        """A container that prints text on stdout and exits with 0."""
        if self.kind == "docker":
            return self.spec(command=("printf", "%s", text))
        return self.spec(env={OUTPUT_ENV: text, RUN_SECONDS_ENV: "0.05"})


@pytest.fixture
def make_docker_runtime(docker_client: Any) -> Iterator[Callable[..., DockerRuntime]]:
    """Builds Docker runtimes on fresh node names; removes every container and volume of
    those after."""
    nodes: list[str] = []

    def make(client: Any = None, policy: WorkerPolicy | None = None) -> DockerRuntime:
        nodes.append(f"t-{uuid.uuid4().hex[:8]}")
        return DockerRuntime(nodes[-1], client=client, policy=policy)

    yield make
    for node in nodes:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{NODE_LABEL}={node}"}, ignore_removed=True
        ):
            container.remove(force=True)
        for volume in docker_client.volumes.list(filters={"label": f"{NODE_LABEL}={node}"}):
            volume.remove(force=True)


@pytest.fixture(params=["mock", pytest.param("docker", marks=pytest.mark.docker)])
def kit(request: pytest.FixtureRequest) -> RuntimeKit:
    """Each test using it runs once on MockRuntime and once on the real engine."""
    if request.param == "mock":
        node = f"m-{uuid.uuid4().hex[:8]}"
        return RuntimeKit("mock", MockRuntime(node), node)
    request.getfixturevalue("busybox_image")
    runtime = request.getfixturevalue("make_docker_runtime")()
    return RuntimeKit("docker", runtime, runtime.node)


def stub_worker(runtime: Runtime) -> tuple[Worker, StubBus]:
    """A worker of node n1 on a stub bus and the given runtime (close it after)."""
    bus = StubBus(user="guest")
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    return Worker(Settings(), config, runtime, bus=bus), bus


def reported(worker: Worker, bus: StubBus, count: int) -> list[dict[str, Any]]:
    """The worker's updates once there are `count`, the engine's answers handed back to
    the bus thread and flushed meanwhile."""

    def done() -> bool:
        bus.run_callbacks()
        worker.flush()
        return len(sent(bus, "update")) >= count

    wait_for(done, what=f"{count} updates")
    return sent(bus, "update")
