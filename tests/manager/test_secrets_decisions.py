"""What the manager decides about secrets and configs, without a broker: who uses a name,
which services an update rolls, and what an attempt's worker is sent."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from manager import core, secrets, services
from manager.secret_key import SecretKey
from manager.store.files import StoredFile
from shared.codec import decode
from shared.files import (
    VALUES,
    ConfigRef,
    FileKind,
    FilesRequest,
    FileValues,
    SecretRef,
    files_context,
)
from shared.models import TaskRecord, TaskSpec
from shared.sealing import public_bytes, unseal
from shared.states import TaskState

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = SecretKey.from_bytes(bytes(range(32)), "/etc/kube/secrets.key")


def spec(name: str, *secret: str, replicas: int | None = None) -> TaskSpec:
    return TaskSpec(
        name=name,
        image="busybox",
        replicas=replicas,
        secrets=tuple(SecretRef(name=s) for s in secret),
        configs=(ConfigRef(name="app", target="/etc/app.conf"),),
    )


def task(spec: TaskSpec, task_id: str, node: str | None = "n1", attempt: int = 1) -> TaskRecord:
    record = core.accept(spec, task_id, NOW).tasks[0]
    return record.model_copy(update={"node": node, "attempt": attempt, "state": TaskState.RUNNING})


def test_users_are_running_services_and_live_tasks_outside_them() -> None:
    web = services.create(spec("web", "pw", replicas=2), NOW)
    stopped = services.stop(services.create(spec("old", "pw", replicas=1), NOW), NOW)
    tasks = [
        task(spec("web", "pw"), "web-1"),  # the service's: named once, as the service
        task(spec("job", "pw"), "job-1"),
        task(spec("other", "token"), "other-1"),
        task(spec("done", "pw"), "done-1").model_copy(update={"state": TaskState.COMPLETED}),
    ]
    assert secrets.users(FileKind.SECRET, "pw", [web, stopped], tasks) == [
        "service web",
        "task job-1",
    ]
    assert secrets.users(FileKind.CONFIG, "app", [], tasks[2:3]) == ["task other-1"]
    assert secrets.users(FileKind.SECRET, "nobody", [web], tasks) == []


def test_an_update_pins_the_new_version_in_each_running_service_that_mounts_it() -> None:
    web = services.create(spec("web", "pw", "token", replicas=2), NOW)
    api = services.create(spec("api", "token", replicas=1), NOW)
    stopped = services.stop(services.create(spec("old", "pw", replicas=1), NOW), NOW)
    rolled = secrets.rolls([web, api, stopped], FileKind.SECRET, "pw", 3)
    assert [(service.name, s.secrets) for service, s in rolled] == [
        ("web", (SecretRef(name="pw", version=3), SecretRef(name="token")))
    ]
    assert secrets.rolls([web], FileKind.CONFIG, "app", 2)[0][1].configs[0].version == 2


def test_a_value_empty_or_over_500_kib_is_refused_by_its_size_only() -> None:
    assert secrets.value_refusal(FileKind.SECRET, "pw", b"") == "secret pw: the value is empty"
    big = b"s3cr3t" * 100_000
    refusal = secrets.value_refusal(FileKind.SECRET, "pw", big)
    assert refusal == "secret pw: the value is 600000 bytes, over 512000"
    assert secrets.value_refusal(FileKind.CONFIG, "app", b"x" * 512_000) is None


def stored(values: dict[tuple[FileKind, str], bytes]) -> secrets.Stored:
    rows = {k: secrets.stored(KEY, k[0], k[1], 1, v, NOW) for k, v in values.items()}

    def find(kind: FileKind, name: str, version: int | None) -> StoredFile | None:
        return rows.get((kind, name))

    return find


def request(node: str = "n1", attempt: int = 1) -> tuple[X25519PrivateKey, FilesRequest]:
    private = X25519PrivateKey.generate()
    public = base64.b64encode(public_bytes(private)).decode()
    return private, FilesRequest(
        node=node, at=NOW, task_id="job-1", attempt=attempt, public_key=public
    )


def test_the_worker_of_the_attempt_gets_the_values_sealed_for_its_key() -> None:
    running = task(spec("job", "pw"), "job-1")
    rows = stored({(FileKind.SECRET, "pw"): b"hunter2", (FileKind.CONFIG, "app"): b"a=1"})
    private, asked = request()
    reply = secrets.files_reply(KEY, running, asked, rows)
    assert reply.error is None and reply.sealed is not None and "hunter2" not in reply.sealed
    opened = unseal(private, base64.b64decode(reply.sealed), files_context("job-1", 1))
    values = decode(VALUES, opened)
    assert isinstance(values, FileValues)
    assert {(v.kind, v.name, base64.b64decode(v.value)) for v in values.values} == {
        (FileKind.SECRET, "pw", b"hunter2"),
        (FileKind.CONFIG, "app", b"a=1"),
    }


def test_another_node_an_old_attempt_or_a_missing_secret_gets_a_reason_and_no_value() -> None:
    running = task(spec("job", "pw"), "job-1", attempt=2)
    rows = stored({(FileKind.SECRET, "pw"): b"hunter2", (FileKind.CONFIG, "app"): b"a=1"})
    for asked in (request(node="n2", attempt=2)[1], request(attempt=1)[1]):
        reply = secrets.files_reply(KEY, running, asked, rows)
        assert reply.sealed is None and reply.error is not None
        assert "is not" in reply.error and "to run" in reply.error
    reply = secrets.files_reply(KEY, running, request(attempt=2)[1], stored({}))
    assert reply.sealed is None and reply.error == "no such secret: pw"
    reply = secrets.files_reply(None, running, request(attempt=2)[1], rows)
    assert reply.error == secrets.NO_KEY


def test_a_value_stored_under_another_key_is_refused_naming_the_key_file() -> None:
    running = task(spec("job", "pw"), "job-1")
    rows = stored({(FileKind.SECRET, "pw"): b"hunter2", (FileKind.CONFIG, "app"): b"a=1"})
    other = SecretKey.from_bytes(bytes(32), "/other.key")
    reply = secrets.files_reply(other, running, request()[1], rows)
    assert reply.sealed is None and reply.error is not None
    assert "secret pw version 1 was encrypted with key" in reply.error
    assert "/other.key" in reply.error and "hunter2" not in reply.error
