"""DockerRuntime against the real Docker engine, with the locally built busybox image
(what all runtimes share is in test_runtime_contract.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
from docker.types import Mount as DockerMount

from shared.errors import EngineUnavailable, ImageNotFound, RuntimeFailure
from shared.images import ImageProblem, describe
from shared.models import PullPolicy, TaskSpec
from shared.sessions import LogsParams
from tests.support.images import BUSYBOX_IMAGE
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from worker.policy import PolicyRefused, WorkerPolicy
from worker.runtime.base import (
    ATTEMPT_LABEL,
    CLUSTER_LABEL,
    NODE_LABEL,
    TASK_LABEL,
    ContainerExit,
    ContainerStatus,
    container_name,
)
from worker.runtime.docker import OOM_ERROR, DockerRuntime

T = TypeVar("T")
TIMEOUT = 30.0
MIB = 1024 * 1024


def spec(**fields: Any) -> TaskSpec:
    """A task spec on the local busybox image that never pulls."""
    fields.setdefault("pull_policy", PullPolicy.NEVER)
    return TaskSpec(name="probe", image=BUSYBOX_IMAGE, **fields)


def get(url: str) -> bytes | None:
    """The body at the URL, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except (urllib.error.URLError, ConnectionError):
        return None


class ExitRecorder:
    """Collects what a watch_exits callback pair receives."""

    def __init__(self) -> None:
        self.exits: list[ContainerExit] = []
        self.errors: list[Exception] = []

    def on_exit(self, stopped: ContainerExit) -> None:
        self.exits.append(stopped)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def exit_of(self, task_id: str) -> ContainerExit | None:
        return next((e for e in self.exits if e.task_id == task_id), None)


class SocketRelay:
    """A unix socket relaying to the engine; cut() drops its connections as a restart would."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path = path
        self._upstream = upstream
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        _close(self._server)
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self._upstream)
            with self._lock:
                self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the relay needs a unix DOCKER_HOST, not {host}")
    return host.removeprefix("unix://")


# busybox_image and docker_client come from tests/conftest.py.
pytestmark = pytest.mark.usefixtures("busybox_image")


@pytest.fixture
def runtime(make_docker_runtime: Callable[..., DockerRuntime]) -> DockerRuntime:
    return make_docker_runtime()


@pytest.fixture
def recorder_of() -> Iterator[Callable[[DockerRuntime], ExitRecorder]]:
    """ExitRecorders subscribed to the given runtimes' exits for the test's duration."""
    watches: list[Any] = []

    def make(runtime: DockerRuntime) -> ExitRecorder:
        recorder = ExitRecorder()
        watches.append(runtime.watch_exits(recorder.on_exit, recorder.on_error))
        return recorder

    yield make
    for watch in watches:
        watch.close()


@pytest.fixture
def recorder(runtime: DockerRuntime) -> Iterator[ExitRecorder]:
    """An ExitRecorder subscribed to the runtime's exits for the test's duration."""
    recorder = ExitRecorder()
    watch = runtime.watch_exits(recorder.on_exit, recorder.on_error)
    yield recorder
    watch.close()


def test_serves_http_on_a_published_port(runtime: DockerRuntime) -> None:
    # given an httpd task publishing container port 8080
    serve = "mkdir -p /www && echo hello-httpd > /www/index.html && exec httpd -f -p 8080 -h /www"
    task = spec(command=("sh", "-c", serve), ports=(8080,))

    # when it starts
    info = runtime.start("web", 1, task)

    # then it runs, Docker picked a host port, and the page is served there
    assert info.status is ContainerStatus.RUNNING
    assert set(info.host_ports) == {"8080"}
    url = f"http://127.0.0.1:{info.host_ports['8080']}/index.html"

    assert wait_for(lambda: get(url), f"httpd at {url}") == b"hello-httpd\n"


def test_a_fixed_host_port_is_published_on_that_port(runtime: DockerRuntime) -> None:
    # given an httpd task asking for a host port chosen now
    serve = "mkdir -p /www && echo fixed > /www/index.html && exec httpd -f -p 80 -h /www"
    port = free_port()
    task = spec(command=("sh", "-c", serve), ports=({"container": 80, "host": port},))

    # when it starts
    info = runtime.start("fixed", 1, task)

    # then it is published on that very port, and answers there
    assert info.host_ports == {"80": port}
    url = f"http://127.0.0.1:{port}/index.html"

    assert wait_for(lambda: get(url), f"httpd at {url}") == b"fixed\n"


def test_start_sets_labels_and_resource_limits(runtime: DockerRuntime, docker_client: Any) -> None:
    # given a task asking for half a core and 64 MiB, with a label of its own
    task = spec(command=("sleep", "60"), cpu=0.5, memory=64 * MIB, labels={"team": "infra"})

    # when it starts
    info = runtime.start("limits", 3, task)

    # then the engine enforces both limits and carries kube's labels beside the task's
    attrs = docker_client.containers.get(info.container_id).attrs
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["Memory"] == 64 * MIB
    assert attrs["Name"] == f"/kube.{runtime.node}.limits.3"
    assert attrs["Config"]["Labels"] == {
        "team": "infra",
        "kube.task-id": "limits",
        "kube.attempt": "3",
        "kube.node": runtime.node,
    }


def test_env_and_command_reach_the_container(
    runtime: DockerRuntime, recorder: ExitRecorder
) -> None:
    # given a command that echoes an environment variable
    task = spec(command=("sh", "-c", "echo $GREETING"), env={"GREETING": "hello-from-kube"})

    # when it runs to completion
    runtime.start("env", 1, task)
    wait_for(lambda: recorder.exit_of("env"), "the env task to exit")

    # then its logs hold the variable's value
    assert runtime.logs("env", 1) == b"hello-from-kube\n"


def test_empty_command_runs_the_image_default(runtime: DockerRuntime, docker_client: Any) -> None:
    # given a task with no command, when it starts
    info = runtime.start("default", 1, spec())

    # then the container runs the image's CMD
    assert docker_client.containers.get(info.container_id).attrs["Config"]["Cmd"] == ["sh"]


def test_logs_hold_stdout_and_stderr(runtime: DockerRuntime, recorder: ExitRecorder) -> None:
    # given a task that wrote to both streams, and exited
    runtime.start("streams", 1, spec(command=("sh", "-c", "echo to-stderr >&2; echo to-stdout")))
    wait_for(lambda: recorder.exit_of("streams"), "the streams task to exit")

    # when its logs are read
    logs = runtime.logs("streams", 1)

    # then both streams are there (the engine copies them apart: their order may vary)
    assert sorted(logs.splitlines()) == [b"to-stderr", b"to-stdout"]


def test_logs_of_a_running_container_return_at_most_limit_bytes_from_the_end(
    runtime: DockerRuntime,
) -> None:
    # given a running task that printed about 1 MB and goes on running
    script = "seq 1 150000; echo the-end; exec sleep 300"
    runtime.start("chatty", 1, spec(command=("sh", "-c", script)))
    wait_for(lambda: b"the-end" in runtime.logs("chatty", 1, tail=1), "the output")

    # when its logs are read with a limit, then the read returns (no following) with the end
    logs = runtime.logs("chatty", 1, limit=4096)
    assert len(logs) == 4096
    assert logs.endswith(b"150000\nthe-end\n")


def test_pull_never_with_a_missing_image_raises_image_not_found(
    runtime: DockerRuntime, docker_client: Any
) -> None:
    # given an image the engine does not have
    image = f"localhost/kube-missing-{uuid.uuid4().hex[:8]}:latest"
    task = TaskSpec(name="missing", image=image, pull_policy=PullPolicy.NEVER)

    # when a task on it starts, then it fails naming the image, and no container is made
    with pytest.raises(ImageNotFound, match=image):
        runtime.start("missing", 1, task)
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={runtime.node}"})
        == []
    )


def test_failed_pull_raises_image_not_found_with_the_cause(
    make_docker_runtime: Callable[..., DockerRuntime],
) -> None:
    # given an image on a registry that is not there (localhost fails fast), and a worker
    # that allows pulls from local registries
    runtime = make_docker_runtime(policy=WorkerPolicy(allow_local_registries=True))
    image = f"localhost/kube-missing-{uuid.uuid4().hex[:8]}:latest"
    task = TaskSpec(name="missing", image=image, pull_policy=PullPolicy.IF_NOT_PRESENT)

    # when a task on it starts, then the error names the image and why the pull failed
    with pytest.raises(ImageNotFound) as caught:
        runtime.start("unpullable", 1, task)
    assert image in str(caught.value)
    assert "connection refused" in str(caught.value)


def test_out_of_memory_is_reported(runtime: DockerRuntime, recorder: ExitRecorder) -> None:
    # given a task that outgrows its 16 MiB limit
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' x)"
    runtime.start("hog", 1, spec(command=("sh", "-c", hog), memory=16 * MIB))

    # when the kernel kills it
    stopped = wait_for(lambda: recorder.exit_of("hog"), "the OOM kill of task hog")

    # then the watch and list() both say it ran out of memory
    assert (stopped.exit_code, stopped.error, stopped.oom_killed) == (137, OOM_ERROR, True)
    [info] = runtime.list()
    assert (info.status, info.exit_code, info.error) == (ContainerStatus.EXITED, 137, OOM_ERROR)


def test_list_returns_this_nodes_containers_only(
    make_docker_runtime: Callable[..., DockerRuntime],
) -> None:
    # given a running and an exited container on this node, and one on another node
    runtime, other = make_docker_runtime(), make_docker_runtime()
    running = runtime.start("runs", 1, spec(command=("sleep", "60"), ports=(8080,)))
    runtime.start("ends", 1, spec(command=("sh", "-c", "exit 5")))
    other.start("elsewhere", 1, spec(command=("sleep", "60")))

    # when this node lists its containers once the second has exited
    def listed() -> dict[str, Any] | None:
        infos = {info.task_id: info for info in runtime.list()}
        return infos if infos.get("ends", running).status is ContainerStatus.EXITED else None

    infos = wait_for(listed, "task ends to exit")

    # then it sees both of its own, with their state, and nothing of the other node
    assert set(infos) == {"runs", "ends"}
    assert infos["runs"] == running
    assert (infos["ends"].exit_code, infos["ends"].attempt) == (5, 1)


def test_an_absent_engine_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_docker_runtime: Callable[..., DockerRuntime],
) -> None:
    # given a DOCKER_HOST whose socket does not exist
    absent = f"unix://{tmp_path / 'absent.sock'}"
    monkeypatch.setenv("DOCKER_HOST", absent)

    # when a runtime connects, then it is EngineUnavailable; a ready client just fails pings
    with pytest.raises(EngineUnavailable):
        DockerRuntime("t-absent")
    offline = make_docker_runtime(docker.DockerClient(base_url=absent, version="1.41"))
    assert offline.ping() is False
    with pytest.raises(EngineUnavailable):
        offline.list()


def test_a_broken_event_stream_is_reported_once(
    tmp_path: Path, make_docker_runtime: Callable[..., DockerRuntime]
) -> None:
    # given a runtime talking to the engine through a relay, watching exits
    relay = SocketRelay(tmp_path / "engine.sock", _engine_socket())
    client = docker.DockerClient(base_url=f"unix://{relay.path}")
    runtime = make_docker_runtime(client)
    recorder = ExitRecorder()
    watch = runtime.watch_exits(recorder.on_exit, recorder.on_error)
    try:
        # when the relay drops every connection, as an engine restart would
        relay.cut()

        # then the watch reports EngineUnavailable once and ends
        wait_for(lambda: recorder.errors, "the watch to report the broken stream")
    finally:
        watch.close()
        relay.close()
        client.close()
    assert len(recorder.errors) == 1
    assert isinstance(recorder.errors[0], EngineUnavailable)


def test_closing_a_watch_reports_no_error(runtime: DockerRuntime) -> None:
    # given a watch, when it is closed, then it ends quietly
    recorder = ExitRecorder()
    watch = runtime.watch_exits(recorder.on_exit, recorder.on_error)
    watch.close()
    assert recorder.errors == []


def test_exec_returns_the_commands_exit_code(runtime: DockerRuntime) -> None:
    # given a running container
    runtime.start("exec", 1, spec(command=("sleep", "300")))
    # then exec reports each command's own exit code, every time
    assert [runtime.exec("exec", 1, ("sh", "-c", f"exit {code}")) for code in (0, 3, 0)] == [
        0,
        3,
        0,
    ]


# -- the policy's checks on the host ----------------------------------------------------


@pytest.fixture
def allowed_dir() -> Iterator[Path]:
    """A directory on the host (where the engine sees it too); removed after, links and all."""
    path = Path(tempfile.mkdtemp(prefix="kube-allowed-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_symlink_made_by_one_task_cannot_mount_the_hosts_root_for_another(
    make_docker_runtime: Callable[..., DockerRuntime],
    recorder_of: Callable[[DockerRuntime], ExitRecorder],
    allowed_dir: Path,
) -> None:
    # given a worker that allows bind mounts of one directory, a file name the escape would
    # write at the host's root, and a first task that links that directory's `link` to /
    runtime = make_docker_runtime(policy=WorkerPolicy(mount_sources=(str(allowed_dir),)))
    recorder = recorder_of(runtime)
    escaped = Path("/") / f"kube-escape-{uuid.uuid4().hex[:8]}"
    try:
        shared = {"source": str(allowed_dir), "target": "/d"}
        runtime.start("linker", 1, spec(command=["ln", "-s", "/", "/d/link"], mounts=[shared]))
        linked = wait_for(lambda: recorder.exit_of("linker"), "the linker to exit", TIMEOUT)
        assert linked.exit_code == 0
        assert (allowed_dir / "link").resolve() == Path("/")

        # when a second task mounts DIR/link (under DIR as written) and writes in it
        link = {"source": f"{allowed_dir}/link", "target": "/host"}
        escape = spec(command=["touch", f"/host/{escaped.name}"], mounts=[link])
        with pytest.raises(PolicyRefused) as caught:
            runtime.start("escape", 1, escape)

        # then it is refused, naming the resolved path, and nothing reached the host's root
        assert f"bind mount of {allowed_dir}/link resolves to /, which is under none" in str(
            caught.value
        )
        assert not escaped.exists()
        assert [info.task_id for info in runtime.list()] == ["linker"]
    finally:
        escaped.unlink(missing_ok=True)


def test_the_engine_mounts_the_resolved_source(
    make_docker_runtime: Callable[..., DockerRuntime], docker_client: Any, allowed_dir: Path
) -> None:
    # given an allowed directory whose `current` links to its `v1`
    (allowed_dir / "v1").mkdir()
    (allowed_dir / "current").symlink_to(allowed_dir / "v1")
    runtime = make_docker_runtime(policy=WorkerPolicy(mount_sources=(str(allowed_dir),)))

    # when a task mounts `current`
    mount = {"source": f"{allowed_dir}/current", "target": "/data", "read_only": True}
    info = runtime.start("resolved", 1, spec(command=["sleep", "30"], mounts=[mount]))

    # then the container's mount source is the resolved path, not the link
    mounts = docker_client.containers.get(info.container_id).attrs["Mounts"]
    assert [(m["Source"], m["Destination"]) for m in mounts] == [(str(allowed_dir / "v1"), "/data")]


def test_a_pull_from_a_loopback_registry_is_refused_before_the_engine_connects(
    runtime: DockerRuntime,
) -> None:
    # given a listener on a loopback port, standing for a service the engine must not reach
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        task = TaskSpec(name="local", image=f"127.0.0.1:{port}/x", pull_policy=PullPolicy.ALWAYS)

        # when a task on an image of that "registry" starts with pull policy always
        with pytest.raises(PolicyRefused) as caught:
            runtime.start("local-registry", 1, task)

        # then it is refused, saying how to allow it, and nothing connected to the port
        assert "a loopback address (worker flag --allow-local-registry" in str(caught.value)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_missing_image_of_a_refused_local_registry_cannot_be_had_for_good(
    runtime: DockerRuntime,
) -> None:
    # given an image named on localhost that the engine does not have (pull if not present)
    image = f"localhost/kube-missing-{uuid.uuid4().hex[:8]}:1"
    task = TaskSpec(name="nope", image=image)
    # when a task on it starts, then it is an image that cannot be had, not a refusal to
    # retry: the task fails at once (docs/local-cluster.md)
    with pytest.raises(ImageNotFound) as caught:
        runtime.start("nope", 1, task)
    assert caught.value.problem is ImageProblem.NO_REGISTRY
    assert "a loopback address" in caught.value.said
    said = describe(image, caught.value.problem, runtime.node, caught.value.said)
    assert said.startswith(f"image {image!r} is not on node {runtime.node} and cannot be pulled")


def test_a_local_image_named_localhost_runs_when_present(runtime: DockerRuntime) -> None:
    # given the local busybox image (localhost/...: Docker reads localhost as a registry)
    assert BUSYBOX_IMAGE.startswith("localhost/")

    # when it starts with the default pull policy, then no pull is needed and it runs
    task = TaskSpec(name="present", image=BUSYBOX_IMAGE, command=("sleep", "30"))
    assert runtime.start("present", 1, task).status is ContainerStatus.RUNNING


def test_a_created_container_whose_source_became_a_link_is_removed_not_started(
    make_docker_runtime: Callable[..., DockerRuntime], docker_client: Any, allowed_dir: Path
) -> None:
    # given an attempt's container created with a resolved source but not started (as a
    # worker that stopped between the two leaves it)
    data = allowed_dir / "data"
    data.mkdir()
    runtime = make_docker_runtime(policy=WorkerPolicy(mount_sources=(str(allowed_dir),)))
    docker_client.containers.create(
        BUSYBOX_IMAGE,
        ["sleep", "30"],
        name=container_name(runtime.node, "swapped", 1),
        labels={TASK_LABEL: "swapped", ATTEMPT_LABEL: "1", NODE_LABEL: runtime.node},
        mounts=[DockerMount("/data", str(data), type="bind")],
    )

    # when a task swaps that directory for a link to the host's root before the start
    data.rmdir()
    data.symlink_to("/")
    mount = {"source": str(data), "target": "/data"}
    with pytest.raises(PolicyRefused) as caught:
        runtime.start("swapped", 1, spec(command=["sleep", "30"], mounts=[mount]))

    # then the start is refused, naming the change, and the container is removed
    assert f"bind mount source {data} changed since it was checked: it resolves to /" in str(
        caught.value
    )
    assert runtime.list() == []


def test_two_clusters_with_one_node_name_on_one_engine_never_touch_each_others_containers(
    make_docker_runtime: Callable[..., DockerRuntime], busybox_image: str, docker_client: Any
) -> None:
    # given two clusters' runtimes on one engine with the same node name, and an
    # unlabelled container from before cluster ids
    ours = make_docker_runtime()
    theirs = DockerRuntime(ours.node)
    ours.join("aaaa0000aaaa0000")
    theirs.join("bbbb0000bbbb0000")
    legacy = DockerRuntime(ours.node)  # joined no cluster: labels none
    old = legacy.start("old", 1, spec(command=("sleep", "60")))
    # when each starts a task
    mine = ours.start("t1", 1, spec(command=("sleep", "60")))
    other = theirs.start("t2", 1, spec(command=("sleep", "60")))
    labels = docker_client.containers.get(mine.container_id).labels
    assert labels[CLUSTER_LABEL] == "aaaa0000aaaa0000"
    # then each lists its own (and the unlabelled one), never the other's
    assert {c.task_id for c in ours.list()} == {"t1", "old"}
    assert {c.task_id for c in theirs.list()} == {"t2", "old"}
    # and a start or a removal of a name the other cluster holds is refused, not taken
    with pytest.raises(RuntimeFailure, match="belongs to another kube cluster"):
        ours.remove("t2", 1)
    with pytest.raises(RuntimeFailure, match="belongs to another kube cluster"):
        ours.start("t2", 1, spec(command=("sleep", "60")))
    # and neither offers the other's running container as an orphan to adopt or remove
    listed, _ = ours.strays(set(), limit=10)
    assert [(s.task_id, s.spec) for s in listed] == [("t2", None)]
    assert "was never in" in str(listed[0].unrecoverable)
    with pytest.raises(RuntimeFailure, match="no orphan"):
        ours.remove_stray(other.container_id, set())
    assert docker_client.containers.get(other.container_id).status == "running"
    assert docker_client.containers.get(old.container_id).status == "running"


def test_the_containers_of_one_task_are_listed_by_its_label(
    make_docker_runtime: Callable[..., DockerRuntime], busybox_image: str
) -> None:
    # given two tasks' containers on a node
    runtime = make_docker_runtime()
    runtime.join("aaaa0000aaaa0000")
    runtime.start("t1", 1, spec(command=("sleep", "60")))
    runtime.start("t2", 1, spec(command=("sleep", "60")))
    # then one task's are listed alone
    assert [(c.task_id, c.attempt) for c in runtime.list("t1")] == [("t1", 1)]
    assert {c.task_id for c in runtime.list()} == {"t1", "t2"}


def test_following_logs_tells_stderr_from_stdout_and_starts_after_since(
    runtime: DockerRuntime, recorder: ExitRecorder
) -> None:
    # given a container that wrote to both streams, a pause between its two halves
    script = "echo out-1; echo err-1 >&2; sleep 1.5; echo out-2; echo err-2 >&2"
    runtime.start("both", 1, spec(command=("sh", "-c", script)))
    wait_for(lambda: recorder.exits, "the container to exit", 30)

    # when its whole output is read, and then only what came after the pause
    lines = list(runtime.follow_logs("both", 1, LogsParams(follow=False)))
    first_half = [line.at for line in lines if line.data.endswith(b"-1\n") and line.at]
    since = max(first_half) + timedelta(seconds=0.5)
    later = runtime.follow_logs("both", 1, LogsParams(follow=False, since=since))
    errors = runtime.follow_logs("both", 1, LogsParams(follow=False, stdout=False))

    # then each line names its stream (the two pipes' order is the engine's), and since
    # and stdout/stderr filter them
    assert sorted((line.fd, line.data) for line in lines) == [
        (1, b"out-1\n"),
        (1, b"out-2\n"),
        (2, b"err-1\n"),
        (2, b"err-2\n"),
    ]
    assert sorted(line.data for line in later) == [b"err-2\n", b"out-2\n"]
    assert [line.data for line in errors] == [b"err-1\n", b"err-2\n"]


KEEP = ({"name": "keep", "target": "/data"},)
OLD_ID, NEW_ID = "0ld0000000000000", "new0000000000000"


def read_keep(docker_client: Any, runtime: DockerRuntime, task_id: str) -> str:
    """What the file on volume keep holds, read by a new container of `task_id`, which then
    writes the task's id to it."""
    script = f"cat /data/f 2>/dev/null; echo {task_id} > /data/f; sleep 60"
    info = runtime.start(task_id, 1, spec(command=("sh", "-c", script), volumes=KEEP))

    def said() -> tuple[str] | None:  # a tuple: what it said may be empty
        container = docker_client.containers.get(info.container_id)
        code, wrote = container.exec_run(["cat", "/data/f"])
        return (container.logs().decode(),) if code == 0 and wrote.strip() else None

    (said_before,) = wait_for(said, f"{task_id} to write its volume", 30)
    runtime.remove(task_id, 1, timeout=1)
    return said_before.strip()


def test_a_new_cluster_on_the_engine_never_mounts_an_old_clusters_volume(
    make_docker_runtime: Callable[..., DockerRuntime], docker_client: Any, busybox_image: str
) -> None:
    # given an old cluster's node that wrote to its volume keep
    old = make_docker_runtime()
    old.join(OLD_ID)
    assert read_keep(docker_client, old, "t1") == ""
    # when a new cluster's node of the same name, on the same engine, mounts keep
    new = DockerRuntime(old.node, client=docker_client)
    new.join(NEW_ID)
    # then it finds an empty volume of its own, named with its cluster's id
    assert read_keep(docker_client, new, "t2") == ""
    assert (
        docker_client.volumes.get(f"kube.{NEW_ID}.{old.node}.keep").attrs["Labels"]["kube.cluster"]
        == NEW_ID
    )
    # and the old cluster's node, restarted, still finds its data
    again = DockerRuntime(old.node, client=docker_client)
    again.join(OLD_ID)
    assert read_keep(docker_client, again, "t3") == "t1"
    assert again.volumes() == ["keep"] and new.volumes() == ["keep"]


def test_a_volume_named_before_cluster_ids_is_kept_by_its_own_cluster_only(
    make_docker_runtime: Callable[..., DockerRuntime], docker_client: Any, busybox_image: str
) -> None:
    # given a volume made by an older worker: named without the cluster, labelled with it
    ours = make_docker_runtime()
    ours.join(OLD_ID)
    labels = {"kube.managed": "true", "kube.node": ours.node, "kube.volume": "keep"}
    docker_client.volumes.create(
        name=f"kube.{ours.node}.keep", labels={**labels, "kube.cluster": OLD_ID}
    )
    assert read_keep(docker_client, ours, "t1") == ""
    # then its cluster's worker keeps using it, and another cluster's never mounts it
    assert read_keep(docker_client, ours, "t2") == "t1"
    other = DockerRuntime(ours.node, client=docker_client)
    other.join(NEW_ID)
    assert read_keep(docker_client, other, "t3") == ""
    assert ours.remove_volume("keep") is True
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"kube.{ours.node}.keep")
