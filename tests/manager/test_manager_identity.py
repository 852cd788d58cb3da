"""Which managers may run on a store: its one broker vhost, names held by live managers,
and managers gone (manager/leadership.py, manager/succession.py, Store.managers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube.cli import REFUSED, main
from manager.config import ManagerConfig
from manager.leadership import (
    FORGET_AFTER,
    Identity,
    LeaseTimes,
    WrongVhost,
    open_leases,
    vhost_of,
)
from manager.store import Store, sqlite_url
from manager.store.lease import Role
from manager.succession import Succession
from shared.errors import ResourceLocked
from shared.models import ManagerRole
from shared.settings import Settings

TIMES = LeaseTimes(length=5.0, renew_every=1.0, standby_every=0.05)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """kube's main() sets the root logger's handler to this test's captured stderr: put
    back the one before, or later tests log to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def succession(store: str, vhost: str, name: str, move: bool = False) -> Succession:
    settings = Settings(amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    return Succession(
        settings,
        ManagerConfig(store=store),
        Identity(name, "h", 1),
        TIMES,
        move_to_vhost=move,
        probe_cluster=False,  # no broker here (tests/e2e/test_store_per_vhost.py has one)
    )


def test_the_vhost_is_the_urls_path_and_slash_when_none() -> None:
    assert vhost_of(Settings(amqp_url="amqp://127.0.0.1/B")) == "B"
    assert vhost_of(Settings(amqp_url="amqp://127.0.0.1/%2F")) == "/"
    assert vhost_of(Settings(amqp_url="amqp://127.0.0.1:5672")) == "/"
    assert vhost_of(Settings(amqp_url="amqp://a:5672/x,amqp://b:5672/x")) == "x"


def test_a_manager_on_another_vhost_never_takes_the_lease(store_url: str) -> None:
    Store(store_url).close()
    leases = open_leases(store_url)
    try:
        # given a cluster on vhost A whose leader recorded it at its first lead
        epoch, _ = succession(store_url, "A", "m1")._wait_for_lease(leases, False)
        assert leases.vhost() == "A"
        leases.release("m1", epoch)  # its leader gone: the lease is free
        # when a manager on vhost B starts on the same store, it is refused
        with pytest.raises(WrongVhost, match="vhost 'A', not 'B'.*--move-to-vhost"):
            succession(store_url, "B", "mv")._wait_for_lease(leases, False)
        # and it never took the lease
        assert leases.holder().name == "m1" and leases.holder().epoch == epoch
        # unless told the cluster moved: then B is the store's vhost
        moved, _ = succession(store_url, "B", "mv", move=True)._wait_for_lease(leases, False)
        assert moved == epoch + 1 and leases.vhost() == "B"
    finally:
        leases.close()


def test_kube_manager_on_another_vhost_exits_4_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path / "state.db")
    Store(url).close()
    leases = open_leases(url)
    leases.claim_vhost("A")
    leases.close()
    code = main(
        ["--amqp-url", "amqp://127.0.0.1:5672/B", "manager", "--store", url, "--metrics-port", "0"]
    )
    err = capsys.readouterr().err
    assert code == REFUSED, err
    (line,) = [x for x in err.splitlines() if x.startswith("kube: ")]
    assert "'A'" in line and "'B'" in line, err


def test_a_name_another_live_manager_holds_is_refused(store_url: str) -> None:
    Store(store_url).close()
    leases = open_leases(store_url)
    try:
        # given m1 leading, alive (this test's own process, seen just now)
        here = Identity.here("m1")
        leases.seen("m1", here.host, here.pid, Role.LEADER, 1)
        # when another process starts as m1, it is refused, naming the one that runs
        other = succession(store_url, "A", "m1")
        other.identity = Identity("m1", here.host, here.pid + 1_000_000)
        with pytest.raises(ResourceLocked, match=f"another manager is named m1 \\(pid {here.pid}"):
            other._wait_for_lease(leases, False)
        # and the leader's row keeps its pid
        assert {m.name: m.pid for m in leases.managers()}["m1"] == here.pid
    finally:
        leases.close()


def test_a_restarted_manager_takes_its_name_back_from_its_dead_self(store_url: str) -> None:
    Store(store_url).close()
    leases = open_leases(store_url)
    try:
        here = Identity.here("m1")
        dead = 2**22 + 12345  # above pid_max's default: no such process
        leases.seen("m1", here.host, dead, Role.LEADER, 1)
        restarted = succession(store_url, "A", "m1")
        restarted.identity = here
        epoch, _ = restarted._wait_for_lease(leases, False)
        assert epoch >= 1
    finally:
        leases.close()


def test_a_manager_not_seen_for_two_leases_is_gone_and_forgotten_after_an_hour(
    store_url: str,
) -> None:
    store = Store(store_url)
    leases = open_leases(store_url)
    try:
        # given a standby last seen 11 s ago (two leases of 5 s: 10 s), another 2 hours ago
        leases.seen("m2", "host-b", 202, Role.STANDBY, 0)
        leases.seen("m3", "host-c", 303, Role.STANDBY, 0)
        leases.db.execute("UPDATE managers SET seen = seen - 11 WHERE name = 'm2'")
        leases.db.execute("UPDATE managers SET seen = seen - 7200 WHERE name = 'm3'")
        # then `kube managers` shows them gone
        roles = {m.name: m.role for m in store.managers()}
        assert roles == {"m2": ManagerRole.GONE, "m3": ManagerRole.GONE}
        # and a leader's renewal forgets the one not seen for more than an hour
        leases.forget(FORGET_AFTER)
        assert [m.name for m in store.managers()] == ["m2"]
    finally:
        store.close()
        leases.close()
