"""The leader's lease and the fence on every commit, on each engine
(manager/store/lease.py, manager/leadership.py, Store's fence)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from manager import core
from manager.epochs import stamp
from manager.leadership import Identity, Keeper, Lease, LeaseTimes, held_by, open_leases
from manager.server import DISPATCH
from manager.store import Store, connect, schema, sqlite_url
from manager.store.lease import Role
from shared.codec import decode, encode
from shared.errors import Deposed, SettingsError
from shared.messages import (
    AdoptOrphan,
    ClusterInfo,
    Disowned,
    Held,
    LogsRequest,
    RemoveOrphan,
    RemoveVolume,
    RunTask,
    StopTask,
)
from shared.models import ManagerRole, TaskSpec
from worker.epochs import Epochs

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FIXTURE = Path(__file__).parent / "fixtures" / "store-5aa63bf.db"


def test_the_lease_goes_to_one_manager_at_a_time_and_each_takeover_bumps_the_epoch(
    store_url: str,
) -> None:
    Store(store_url).close()
    a, b = open_leases(store_url), open_leases(store_url)
    # given a manager that took the lease
    first = a.acquire("a", 5.0)
    assert first is not None
    # then another cannot take it while it lasts, and the first renews it
    assert b.acquire("b", 5.0) is None
    assert a.renew("a", first, 5.0)
    assert b.holder().name == "a" and b.holder().left > 4
    # when it expires (here: released), the other takes it at a newer epoch
    a.release("a", first)
    second = b.acquire("b", 5.0)
    assert second == first + 1
    # and the first can no longer renew it
    assert not a.renew("a", first, 5.0)
    # and a lease still held is taken again by its holder only when it reclaims it
    assert b.acquire("b", 5.0) is None
    assert b.acquire("b", 5.0, reclaim=True) == second + 1
    a.close()
    b.close()


def test_a_deposed_managers_commit_fails_and_its_writes_are_rolled_back(store_url: str) -> None:
    Store(store_url).close()
    leases = open_leases(store_url)
    epoch = leases.acquire("a", 5.0)
    assert epoch is not None
    store = Store(store_url, fence=("a", epoch))
    # given the leader records a task and commits: it lands
    store.record(core.accept(TaskSpec(name="x", image="i"), "t1", NOW))
    store.commit()
    # when another manager takes the lease (the leader paused: its lease ran out), and
    # the old leader records more
    leases.release("a", epoch)
    other = open_leases(store_url)
    assert other.acquire("b", 5.0) == epoch + 1
    store.record(core.accept(TaskSpec(name="x", image="i"), "t2", NOW))
    # then the old leader's commit fails, and what it recorded is not there
    with pytest.raises(Deposed, match="no longer the leader"):
        store.commit()
    assert store.deposed
    store.close(commit=False)
    db = connect(store_url)
    assert db.query("SELECT id FROM tasks ORDER BY id") == [("t1",)]
    db.close()
    leases.close()
    other.close()


@pytest.mark.postgres
def test_on_postgresql_a_takeover_waits_for_the_leaders_commit_in_flight(
    postgres_database: str, tmp_path: Path
) -> None:
    from tests.support.stores import Stores

    url = Stores("postgresql", postgres_database, tmp_path).new()
    Store(url).close()
    leases = open_leases(url)
    epoch = leases.acquire("a", 0.5)
    assert epoch is not None
    store = Store(url, fence=("a", epoch))
    store.record(core.accept(TaskSpec(name="x", image="i"), "t1", NOW))
    # given the leader's fence check holds the lease's row (FOR SHARE) until it commits
    store._check_fence()
    taken: list[int | None] = []
    other = open_leases(url)
    threading.Event().wait(0.6)  # the lease expires on the database's clock
    taker = threading.Thread(target=lambda: taken.append(other.acquire("b", 5.0)))
    taker.start()
    # then the takeover waits while the leader's transaction is open
    taker.join(timeout=0.5)
    assert taker.is_alive() and not taken
    # and once the leader's commit lands, it goes on, at the next epoch
    store._db.commit()
    taker.join(timeout=5)
    assert taken == [epoch + 1]
    db = connect(url)
    assert db.query("SELECT id FROM tasks") == [("t1",)]
    db.close()
    store.close()
    leases.close()
    other.close()


def test_the_managers_seen_are_listed_with_the_leader_and_its_epoch(store_url: str) -> None:
    store = Store(store_url)
    leases = open_leases(store_url)
    epoch = leases.acquire("m1", 5.0)
    assert epoch is not None
    leases.seen("m1", "host-a", 101, Role.LEADER, epoch)
    leases.seen("m2", "host-b", 202, Role.STANDBY, 0)
    listed = {m.name: m for m in store.managers()}
    assert listed["m1"].role == ManagerRole.LEADER and listed["m1"].epoch == epoch
    assert listed["m1"].since is not None
    assert listed["m2"].role == ManagerRole.STANDBY and listed["m2"].epoch == 0
    assert listed["m2"].seen_ago < 5
    assert held_by(leases) == f"manager m1 (pid 101 on host-a, epoch {epoch})"
    store.close()
    leases.close()


def test_a_database_at_version_4_gets_the_lease_tables(store_url: str) -> None:
    # given a database at version 4 (the lease's tables dropped, as before them)
    Store(store_url).close()
    db = connect(store_url)
    db.begin()
    db.execute("DROP TABLE leader")
    db.execute("DROP TABLE managers")
    db.set_schema_version(4)
    db.execute("COMMIT")
    db.close()
    # when today's kube opens it
    Store(store_url).close()
    leases = open_leases(store_url)
    # then its lease is held by no one, and the first manager takes it at epoch 1
    assert leases.holder().name == "" and leases.acquire("m", 5.0) == 1
    leases.close()


def test_a_database_of_kube_5aa63bf_gets_the_lease_tables(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(FIXTURE, old)
    Store(old).close()
    with sqlite3.connect(old) as file:
        assert file.execute("PRAGMA user_version").fetchone() == (schema.VERSION,)
        assert file.execute("SELECT holder, epoch FROM leader").fetchall() == [("", 0)]
    leases = open_leases(sqlite_url(old))
    assert leases.acquire("m", 5.0) == 1
    leases.close()


class FakeLeases:
    """Leases that answer as told, for the keeper's rules."""

    def __init__(self) -> None:
        self.answer: bool | Exception = True
        self.released: list[int] = []

    def renew(self, name: str, epoch: int, length: float) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def seen(self, *args: object) -> None:
        pass

    def release(self, name: str, epoch: int) -> None:
        self.released.append(epoch)

    def forget(self, older_than: float) -> None:
        pass


def keeper(leases: FakeLeases, clock: list[float], broker: list[float]) -> Keeper:
    lost: list[bool] = []
    me = Identity("m", "h", 1)
    k = Keeper(
        leases,  # type: ignore[arg-type]
        me,
        Lease(3, 5.0, clock[0]),
        LeaseTimes(),
        lambda: broker[0],
        lambda: lost.append(True),
        lambda: clock[0],
    )
    return k


def test_a_leader_that_cannot_renew_for_its_lease_stops_acting() -> None:
    from shared.errors import StoreUnavailable

    clock, broker = [100.0], [100.0]
    leases = FakeLeases()
    k = keeper(leases, clock, broker)
    # given renewals that succeed: the lease stays valid
    clock[0], broker[0] = 101.0, 101.0
    k.renew_once()
    assert k.lease.valid(clock[0]) and k.lease.renewed_at == 101.0
    # when the store stops answering, it stays valid until `length` after the last renewal
    leases.answer = StoreUnavailable("gone")
    clock[0], broker[0] = 105.0, 105.0
    k.renew_once()
    assert k.lease.valid(105.0) and k.lease.lost is None
    clock[0], broker[0] = 106.0, 106.0
    k.renew_once()
    # then it is given up at once, and never released (it is not this manager's to give)
    assert not k.lease.valid(106.0) and "not renewed" in (k.lease.lost or "")
    k.stop(release=True)
    assert leases.released == []


def test_a_leader_without_the_broker_for_its_lease_gives_it_up() -> None:
    clock, broker = [100.0], [100.0]
    k = keeper(FakeLeases(), clock, broker)
    clock[0] = 104.0
    k.renew_once()
    assert k.lease.lost is None
    clock[0] = 105.5
    k.renew_once()
    assert "without the broker" in (k.lease.lost or "")


def test_a_leader_that_finds_another_holds_the_lease_gives_it_up() -> None:
    clock, broker = [100.0], [100.0]
    leases = FakeLeases()
    leases.answer = False
    k = keeper(leases, clock, broker)
    k.renew_once()
    assert "another manager" in (k.lease.lost or "")


def test_a_manager_name_is_checked() -> None:
    assert Identity.here("m-1").name == "m-1"
    assert Identity.here().pid > 0
    with pytest.raises(SettingsError, match="manager name 'bad name'"):
        Identity.here("bad name")
    with pytest.raises(SettingsError, match="longer than its renewal"):
        LeaseTimes(length=1.0, renew_every=2.0)


def test_a_dispatch_is_stamped_with_the_publishing_leaders_epoch() -> None:
    spec = TaskSpec(name="x", image="i")
    for message in (
        RunTask(task_id="t1", attempt=1, spec=spec),
        StopTask(task_id="t1", attempt=2),
        LogsRequest(request_id="r", task_id="t1", attempt=1, ttl=5.0),
        ClusterInfo(cluster="c0ffee00"),
        # a deposed manager must not disown, remove or adopt a container either
        Disowned(tasks=(Held(task_id="t1", attempt=1),)),
        RemoveOrphan(container_id="a" * 64),
        AdoptOrphan(task_id="t1", attempt=1, container_id="a" * 64),
        RemoveVolume(name="pgdata"),  # nor remove a volume's data
    ):
        body = stamp(encode(message), 12)
        assert decode(DISPATCH, body).epoch == 12
        assert stamp(body, 13) == encode(message.model_copy(update={"epoch": 13}))
    assert stamp(b'{"kind":"clock-ahead","ahead":1}', 5) == b'{"kind":"clock-ahead","ahead":1}'


def test_a_worker_refuses_a_dispatch_older_than_the_newest_epoch_it_has_seen() -> None:
    epochs = Epochs()
    assert epochs.admit(0)  # a manager from before epochs
    assert epochs.admit(4)
    assert not epochs.admit(3) and not epochs.admit(0)
    assert epochs.first_refusal(3) and not epochs.first_refusal(3)
    assert epochs.admit(4) and epochs.admit(5)
    epochs.forget()  # another cluster: its epochs start again
    assert epochs.admit(1)


def test_a_leader_stamps_its_epoch_and_once_deposed_publishes_and_acks_nothing(
    tmp_path: Path,
) -> None:
    import json

    from manager.config import ManagerConfig
    from manager.effects import Decision
    from manager.server import Manager
    from shared import topology
    from shared.bus.stub import StubBus
    from shared.settings import Settings
    from tests.support.manager import ready_node

    url = sqlite_url(tmp_path / "m.db")
    Store(url).close()
    leases = open_leases(url)
    epoch = leases.acquire("m1", 5.0)
    assert epoch is not None
    bus = StubBus()
    lease = Lease(epoch, 5.0, renewed_at=0.0)
    manager = Manager(
        Settings(),
        ManagerConfig(store=url),
        bus=bus,
        clock=lambda: NOW,
        monotonic=lambda: 1.0,
        lease=lease,
        identity=Identity("m1", "h", 1),
    )
    manager.setup()
    manager.commit(Decision(nodes=[ready_node("n1")]))
    manager.announce()
    bus.connect()

    def submit(task_id: str) -> None:
        body = json.dumps({"id": task_id, "name": task_id, "image": "busybox"}).encode()
        bus.deliver(
            topology.COMMANDS_QUEUE,
            body,
            routing_key=topology.SUBMIT_KEY,
            reply_to="amq.rabbitmq.reply-to",
            user_id="guest",
        )

    # given the leader places a task: its dispatch carries the leader's epoch
    submit("t1")
    bus.process_events()
    (run,) = [json.loads(p.body) for p in bus.published if p.exchange == topology.DISPATCH]
    assert (run["task_id"], run["epoch"]) == ("t1", epoch)
    assert any(p.routing_key == "manager.leader" for p in bus.published)
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("kube_manager_leader") == 1
    assert REGISTRY.get_sample_value("kube_manager_epoch") == epoch
    assert (REGISTRY.get_sample_value("kube_manager_takeovers_total") or 0) >= 1
    sent, acked = len(bus.published), len(bus.acked)
    # when another manager takes the lease, and a submission comes to the old leader
    leases.release("m1", epoch)
    assert leases.acquire("m2", 5.0) == epoch + 1
    submit("t2")
    # then its batch fails to commit: it publishes and acks nothing more, and says why
    with pytest.raises(Deposed):
        bus.process_events()
    assert (len(bus.published), len(bus.acked)) == (sent, acked)
    assert not manager.acting()
    manager.store.close(commit=False)
    db = connect(url)
    assert db.query("SELECT id FROM tasks ORDER BY id") == [("t1",)]
    db.close()
    leases.close()


def test_a_leader_whose_lease_ran_out_on_its_clock_stops_before_publishing(
    tmp_path: Path,
) -> None:
    from manager.config import ManagerConfig
    from manager.server import Manager
    from shared.bus.stub import StubBus
    from shared.settings import Settings

    url = sqlite_url(tmp_path / "m.db")
    Store(url).close()
    now = [10.0]
    lease = Lease(1, 5.0, renewed_at=10.0)
    bus = StubBus()
    manager = Manager(
        Settings(),
        ManagerConfig(store=url),
        bus=bus,
        monotonic=lambda: now[0],
        lease=lease,
        identity=Identity("m1", "h", 1),
    )
    manager.setup()
    bus.connect()
    assert manager.acting()
    # when its monotonic clock passes the lease since its last renewal (paused, say)
    now[0] = 15.5
    # then its next batch raises before anything is published or acked
    sent = len(bus.published)
    with pytest.raises(Deposed, match="lease"):
        manager.finish_batch()
    assert len(bus.published) == sent
    manager.store.close(commit=False)


def test_on_sqlite_a_lease_left_by_a_dead_process_of_this_host_is_taken_at_once(
    tmp_path: Path,
) -> None:
    import socket
    import subprocess

    from manager.succession import dead_holder

    url = sqlite_url(tmp_path / "m.db")
    Store(url).close()
    leases = open_leases(url)
    here = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    # given a lease held, unexpired, by a manager of this host whose process is gone
    epoch = leases.acquire("old", 60.0)
    assert epoch is not None
    leases.seen("old", here, gone.pid, Role.LEADER, epoch)
    # then it is known dead, and its lease is taken at once
    assert dead_holder(leases, here) == "old"
    assert leases.acquire("new", 5.0, dead=dead_holder(leases, here)) == epoch + 1
    # but a live holder's, or one of another host, is not
    leases.seen("new", here, os.getpid(), Role.LEADER, epoch + 1)
    assert dead_holder(leases, here) is None
    leases.seen("new", "elsewhere", gone.pid, Role.LEADER, epoch + 1)
    assert dead_holder(leases, here) is None
    leases.close()


def test_on_sqlite_each_commit_renews_the_lease_in_its_own_transaction(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "m.db")
    Store(url).close()
    leases = open_leases(url)
    epoch = leases.acquire("m1", 1.0)
    assert epoch is not None
    lease = Lease(epoch, 30.0, renewed_at=0.0)
    store = Store(url, fence=("m1", epoch), renew=(30.0, lease.renewed))
    # when the leader commits a batch (which holds the file's write lock while it runs)
    store.record(core.accept(TaskSpec(name="x", image="i"), "t1", NOW))
    store.commit()
    # then the lease was renewed by that commit, for its length, and the lease knows it
    assert leases.holder().left > 20
    assert lease.renewed_at > 0
    store.close()
    leases.close()
