"""A `kube up` on Docker killed outright (SIGKILL) leaves its task containers; the next
`kube up` removes them, as docs/local-cluster.md says, whatever runtime it runs; one that
cannot reach the engine keeps the folder and says why. Real broker, real engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from tests.conftest import ROOT
from tests.kube.test_up_endings import Up
from tests.support.waiting import wait_for
from worker.runtime.base import NODE_LABEL

pytestmark = pytest.mark.e2e


@pytest.fixture
def up(vhost: str, tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Up]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    one = Up(vhost, tmp)
    try:
        yield one
    finally:
        one.kill_all()
        for container in containers(docker_client, one.prefix):
            container.remove(force=True)


def containers(client: docker.DockerClient, prefix: str) -> list[Container]:
    """The containers of this test's node (`<prefix>-1`)."""
    return client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={prefix}-1"})


def on_docker(up: Up, runtime: str = "docker") -> list[str]:
    flags = ("--workers", "1", "--runtime", runtime, "--name-prefix", up.prefix)
    return [sys.executable, "-m", "kube", "up", *flags]


@pytest.mark.parametrize("runtime", ["docker", "mock"])
def test_the_next_kube_up_removes_the_containers_of_one_killed_outright(
    up: Up, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str, runtime: str
) -> None:
    # given a kube up on Docker running a task
    log = tmp_path / "up.log"
    first = up.start(on_docker(up), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log)
    task = ("--name", "left", "--image", busybox_image, "--pull-policy", "never")
    run = subprocess.run(
        [sys.executable, "-m", "kube", "run", *task, "--", "sleep", "300"],
        capture_output=True,
        text=True,
        env={**up.env, "TMPDIR": os.environ.get("TMPDIR", "/tmp")},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr + log.read_text()
    wait_for(lambda: containers(docker_client, up.prefix), timeout=60, what="its container")
    # when it is killed with SIGKILL: its children die, its container stays
    first.kill()
    first.wait(10)
    wait_for(lambda: not up.processes(), timeout=30, what="the children to die")
    assert containers(docker_client, up.prefix), "the container should be left"
    if runtime == "mock":
        # a kube up that cannot reach the engine keeps the folder, and says why
        log0 = tmp_path / "up0.log"
        blind = {**up.env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
        argv = on_docker(up, runtime)
        zeroth = subprocess.Popen(
            argv, env=blind, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log0.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        up.procs.append(zeroth)
        up.wait_ready(log0)
        said = log0.read_text()
        assert "could not remove the task containers" in said and "kept " in said, said
        zeroth.terminate()
        assert zeroth.wait(60) == 0, log0.read_text()
        assert containers(docker_client, up.prefix), "the container should still be there"
    # then the next kube up removes it, and says so
    log2 = tmp_path / "up2.log"
    second = up.start(on_docker(up, runtime), stdout=log2.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log2)
    said = log2.read_text()
    assert "removed what a killed kube up left" in said and "1 task container(s)" in said, said
    assert [c.labels for c in containers(docker_client, up.prefix)] == [], said
    second.terminate()
    assert second.wait(60) == 0, log2.read_text()
