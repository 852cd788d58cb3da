"""The manager process over its life: standby, leader, standby again (manager/leadership.py).

Each term as leader is a fresh `Manager`: its state read from the store, its own bus
connection, its lease's epoch. When a term ends without a stop being asked for (deposed,
the lease or the store lost), nothing of it is kept: the process waits for the store,
and competes for the lease again.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from manager import metrics
from manager.config import ManagerConfig
from manager.leadership import (
    Identity,
    Keeper,
    Lease,
    LeaseTimes,
    check_name,
    check_vhost,
    held_by,
    is_shared,
    open_leases,
    vhost_of,
)
from manager.server import Manager, check_cluster
from manager.store import read_cluster_id
from manager.store.lease import Leases, Role
from shared.errors import ResourceLocked, StoreUnavailable
from shared.settings import Settings

log = logging.getLogger(__name__)


def dead_holder(leases: Leases, host: str) -> str | None:
    """The lease's holder if it ran on this host and its process is gone (a SQLite
    manager killed a moment ago: its successor need not wait out its lease)."""
    holder = leases.holder().name
    seen = {m.name: m for m in leases.managers()}.get(holder)
    if seen is None or seen.host != host:
        return None
    try:
        os.kill(seen.pid, 0)
    except ProcessLookupError:
        return holder
    except PermissionError:
        return None  # alive, another user's
    return None


class Stopped(Exception):
    """A stop was asked for while waiting."""


class Succession:
    """Runs terms as leader, with standby spells between them, until stopped."""

    def __init__(
        self,
        settings: Settings,
        config: ManagerConfig,
        identity: Identity,
        times: LeaseTimes,
        move_to_vhost: bool = False,
        probe_cluster: bool = True,
    ) -> None:
        self.settings, self.config, self.identity, self.times = settings, config, identity, times
        self.vhost = vhost_of(settings)
        self.move_to_vhost = move_to_vhost  # record this vhost as the store's, at the lead
        self.probe_cluster = probe_cluster  # refuse a start beside another store's leader
        self.shared = is_shared(config.store)
        self._stopping = threading.Event()
        self._manager: Manager | None = None
        self._opened = False  # whether the store was opened once (then it is waited for)
        self._named = False  # whether its name was found free (at the first start)

    def stop(self) -> None:
        """Stop from any thread or a signal handler: a leader releases its lease."""
        self._stopping.set()
        manager = self._manager
        if manager is not None:
            manager.bus.stop()

    def run(self) -> None:
        reclaim = False  # whether the lease may still be this manager's to take again
        while not self._stopping.is_set():
            try:
                leases = self._connect()
            except Stopped:
                return
            try:
                epoch, taken_at = self._wait_for_lease(leases, reclaim)
                reclaim = False
                reclaim = self._lead(leases, epoch, taken_at)
            except Stopped:
                return
            except StoreUnavailable as exc:
                log.error("manager %s: %s; starting again", self.identity.name, exc)
            finally:
                leases.close()

    def _connect(self) -> Leases:
        """The lease table, once the store answers (tried again with backoff). At the
        first start a store that does not answer is an error, as a wrong URL is more
        likely then than an outage; once it answered, it is waited for."""

        def attempt() -> Leases:
            if self._stopping.is_set():
                raise Stopped
            return open_leases(self.config.store)

        if not self._opened:
            leases = attempt()
            self._opened = True
            return leases

        def said(state: object) -> None:
            log.warning("manager %s: waiting for the store: %s", self.identity.name, state)

        def sleep(seconds: float) -> None:
            self._stopping.wait(seconds)

        retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            stop=stop_never,
            before_sleep=lambda s: said(s.outcome.exception() if s.outcome else None),
            sleep=sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _wait_for_lease(self, leases: Leases, reclaim: bool) -> tuple[int, float]:
        """Wait as a standby until the lease is taken: its epoch, and the monotonic time
        the taking began. With SQLite, a lease another manager keeps renewing is a
        refusal, naming it (one manager per database)."""
        me, times = self.identity, self.times
        give_up_at = time.monotonic() + times.length + 2 * times.standby_every
        said = False
        if not self._named:
            check_name(leases, me, times.length)  # before this manager's name is written
            if self.shared and self.probe_cluster:
                check_cluster(self.settings, read_cluster_id(self.config.store))
            self._named = True
        while not self._stopping.is_set():
            started = time.monotonic()
            if not self.move_to_vhost:
                check_vhost(leases, self.vhost)  # before ever taking the lease
            dead = None if self.shared else dead_holder(leases, me.host)
            epoch = leases.acquire(me.name, times.length, reclaim, dead)
            if epoch is not None:
                self._claim_vhost(leases, epoch)
                log.info("manager %s: took the lease at epoch %d", me.name, epoch)
                return epoch, started
            if not self.shared and started > give_up_at:
                raise ResourceLocked(
                    f"another kube manager uses the database {leases.where}: {held_by(leases)};"
                    " one manager per SQLite database: stop it first (several managers need"
                    " a PostgreSQL store)"
                )
            if self.shared:
                leases.seen(me.name, me.host, me.pid, Role.STANDBY, 0)
            if not said:
                log.info("manager %s: standby; %s leads", me.name, held_by(leases, me))
                said = True
            self._stopping.wait(times.standby_every)
        raise Stopped

    def _claim_vhost(self, leases: Leases, epoch: int) -> None:
        """Record this manager's vhost as the store's (at a first lead, or when moving);
        if another manager recorded another one between the check and the taking, give
        the lease back at once and refuse."""
        recorded = leases.claim_vhost(self.vhost, move=self.move_to_vhost)
        if recorded != self.vhost:
            leases.release(self.identity.name, epoch)
            check_vhost(leases, self.vhost)
        elif self.move_to_vhost:
            log.warning("manager %s: the store's vhost is now %r", self.identity.name, recorded)

    def _lead(self, leases: Leases, epoch: int, taken_at: float) -> bool:
        """One term as leader, until stopped or no longer leading; whether the lease may
        still be this manager's (the term ended on the store's connection, lost while
        the lease was still held: it is taken again at once if no one took it)."""
        me = self.identity
        lease = Lease(epoch, self.times.length, taken_at)
        manager = Manager(self.settings, self.config, lease=lease, identity=me)
        keeper = Keeper(
            leases,
            me,
            lease,
            self.times,
            manager.broker_last_seen,
            manager.bus.stop,
            reopen=lambda: open_leases(self.config.store),
        )
        self._manager = manager
        if self._stopping.is_set():
            manager.bus.stop()
        try:
            leases.seen(me.name, me.host, me.pid, Role.LEADER, epoch)
            keeper.start()
            manager.run(wait_for_lock=self.shared)
        finally:
            self._manager = None
            keeper.stop(release=self._stopping.is_set())
            if keeper.leases is not leases:
                keeper.leases.close()
            metrics.stepped_down()
        if not self._stopping.is_set():
            log.warning("manager %s: term at epoch %d over; back to standby", me.name, epoch)
        return lease.lost is None and not manager.store.deposed
