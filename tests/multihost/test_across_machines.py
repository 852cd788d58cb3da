"""The "Across machines" commands of docs/deployment.md, run as written on hosts of their
own: a manager here (the broker's machine), a worker on each of two hosts, and the user's
commands from a fourth host, which then reaches the service at the endpoint kube reports."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.hosts import Bed
from tests.support.waiting import wait_for

MARKER = "<!-- across-machines:"


def readme_commands() -> list[list[str]]:
    """The `kube ...` lines of docs/deployment.md's across-machines block, comments dropped."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    block = text.split(MARKER, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = (line.split("  #", 1)[0].strip() for line in block.splitlines())
    return [shlex.split(line) for line in lines if line.startswith("kube ")]


def as_python(argv: list[str]) -> list[str]:
    """`kube ...` as this interpreter's `python -m kube ...` (PATH may lack the venv)."""
    assert argv[0] == "kube"
    return [sys.executable, "-m", "kube", *argv[1:]]


@pytest.fixture
def manager(bed: Bed, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`kube manager` as docs/deployment.md runs it, on the broker's machine (the root
    namespace)."""
    (command,) = [argv for argv in readme_commands() if argv[:2] == ["kube", "manager"]]
    env = {"KUBE_AMQP_URL": bed.url("127.0.0.1"), "XDG_STATE_HOME": str(tmp_path), "PATH": ""}
    log = (tmp_path / "manager.log").open("wb")
    process = subprocess.Popen(
        as_python(command), env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_readme_commands_run_a_service_reachable_at_its_reported_endpoint(
    bed: Bed, manager: subprocess.Popen[bytes]
) -> None:
    commands = readme_commands()
    (worker,) = [argv for argv in commands if argv[:2] == ["kube", "worker"]]
    users = [argv for argv in commands if argv[1] not in ("manager", "worker")]
    one, two, client = *bed.add_hosts(2), *bed.add_hosts(1, engine=False)
    env = {"KUBE_AMQP_URL": bed.url()}
    # given a worker on each of two hosts, started as docs/deployment.md says, a name each
    for index, host in enumerate((one, two), start=1):
        argv = [re.sub(r"^node-1$", f"node-{index}", arg) for arg in worker]
        host.spawn(as_python(argv), env=env, log=f"worker-{index}")

    def nodes() -> str:
        done = client.run(as_python(users[0]), env=env)
        return done.stdout if done.returncode == 0 else ""

    # when the user asks for the nodes, both show with their hosts' addresses
    wait_for(lambda: one.address in nodes() and two.address in nodes(), timeout=60)
    # and runs the service, and asks for its endpoints
    for argv in users[1:]:
        done = client.run(as_python(argv), env=env, timeout=120)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}\n{bed.logs()}"
    (endpoint,) = done.stdout.split()
    address, port = endpoint.rsplit(":", 1)
    # then the endpoint is a worker host's address and the fixed port
    assert address in (one.address, two.address) and port == "8080"
    # and the fourth host gets the task's answer there: its container's host name
    body = client.fetch(f"http://{endpoint}/hostname")
    assert body is not None and body.strip(), bed.logs()
    # and nothing answers at the other worker's address
    other = two.address if address == one.address else one.address
    assert not client.connects(other, 8080)
