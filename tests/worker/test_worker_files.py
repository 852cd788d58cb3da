"""The worker's side of secrets and configs: asked with a key made per attempt, written on
a tmpfs with their modes, removed when the attempt ends (worker/files.py)."""

from __future__ import annotations

import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from manager import core, secrets
from manager.secret_key import SecretKey
from shared.errors import SecretError
from shared.files import ConfigRef, FileKind, FilesRequest, SecretRef
from shared.models import TaskSpec
from shared.states import TaskState
from worker.files import FileMount, Files, filesystem
from worker.runtime.mock import MockRuntime

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = SecretKey.from_bytes(bytes(range(32)), "test key")
SPEC = TaskSpec(
    name="job",
    image="busybox",
    secrets=(SecretRef(name="pw"), SecretRef(name="pw", target="/etc/pw")),
    configs=(ConfigRef(name="app", target="/etc/app.conf"),),
)
VALUES = {(FileKind.SECRET, "pw"): b"hunter2", (FileKind.CONFIG, "app"): b"a=1\n"}


@pytest.fixture
def shm() -> Iterator[Path]:
    path = Path("/dev/shm") / f"kube-unit-{uuid.uuid4().hex[:8]}"
    if not Path("/dev/shm").is_dir() or filesystem(Path("/dev/shm")) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def manager_answering(spec: TaskSpec) -> tuple[list[Files], object]:
    """An `ask` that answers as the manager would, from another thread."""
    rows = {k: secrets.stored(KEY, k[0], k[1], 1, v, NOW) for k, v in VALUES.items()}
    record = core.accept(spec, "job-1", NOW).tasks[0]
    record = record.model_copy(update={"node": "n1", "attempt": 1, "state": TaskState.SCHEDULED})
    holder: list[Files] = []

    def ask(request: FilesRequest) -> None:
        reply = secrets.files_reply(KEY, record, request, lambda k, n, v: rows.get((k, n)))
        threading.Timer(0.01, holder[0].answered, (reply,)).start()

    return holder, ask


def test_files_are_written_with_their_modes_and_removed_with_the_attempt(shm: Path) -> None:
    holder, ask = manager_answering(SPEC)
    files = Files(shm, "n1", ask)  # type: ignore[arg-type]
    holder.append(files)
    mounts = files.fetch(("job-1", 1), SPEC)
    assert [m.target for m in mounts] == ["/run/secrets/pw", "/etc/pw", "/etc/app.conf"]
    for mount, (value, mode) in zip(
        mounts, [(b"hunter2", 0o400), (b"hunter2", 0o400), (b"a=1\n", 0o444)], strict=True
    ):
        path = Path(mount.source)
        assert path.read_bytes() == value and stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE(Path(mounts[0].source).parent.stat().st_mode) == 0o700
    # a start again (a redelivered dispatch) writes them anew
    assert files.fetch(("job-1", 1), SPEC) == mounts
    files.remove(("job-1", 1))
    assert not Path(mounts[0].source).parent.exists()
    files.remove(("job-1", 1))  # nothing left: fine


def test_secrets_are_never_written_outside_a_tmpfs(tmp_path: Path) -> None:
    if filesystem(tmp_path) == "tmpfs":
        pytest.skip("the temporary folder is a tmpfs here")
    files = Files(tmp_path, "n1", lambda request: None)
    with pytest.raises(SecretError, match="only to a tmpfs.*--files-dir"):
        files.fetch(("job-1", 1), SPEC)


def test_a_manager_that_does_not_answer_fails_the_start_in_time(shm: Path) -> None:
    files = Files(shm, "n1", lambda request: None, wait=0.1)
    with pytest.raises(SecretError, match="did not send the secrets and configs within 0.1 s"):
        files.fetch(("job-1", 1), SPEC)


def test_a_spec_without_secrets_or_configs_asks_nothing(tmp_path: Path) -> None:
    def never(request: FilesRequest) -> None:
        raise AssertionError("asked")

    files = Files(tmp_path, "n1", never)
    assert files.fetch(("job-1", 1), TaskSpec(name="job", image="busybox")) == ()


def test_the_mock_runtime_takes_the_files_as_docker_would() -> None:
    runtime = MockRuntime("n1")
    mount = FileMount("/dev/shm/kube/n1/job-1.1/secret-0-pw", "/run/secrets/pw")
    info = runtime.start("job-1", 1, TaskSpec(name="job", image="busybox"), (mount,))
    assert info.task_id == "job-1"
    assert runtime._containers[("job-1", 1)].files == (mount,)


def test_a_sweep_removes_what_a_previous_process_left_but_not_its_own_or_running(
    shm: Path,
) -> None:
    holder, ask = manager_answering(SPEC)
    files = Files(shm, "n1", ask)  # type: ignore[arg-type]
    holder.append(files)
    mine = Path(files.fetch(("job-1", 1), SPEC)[0].source).parent
    left = [files.root / "old-1.1", files.root / "old-2.3"]
    for folder in left:
        folder.mkdir()
    files.sweep([("old-2", 3)])  # old-2 attempt 3 still runs
    assert mine.exists() and not left[0].exists() and left[1].exists()
