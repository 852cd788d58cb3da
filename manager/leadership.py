"""Which manager acts: a lease in the store, taken by a standby when it expires.

Any number of managers may run against one PostgreSQL store; the one that holds the lease
(manager/store/lease.py) leads, the others wait as standbys and try to take it every
`standby_every` seconds. A standby that takes it, at a new epoch:

1. takes the broker's lock queue too (topology.MANAGER_LOCK), waiting until the broker
   grants it: the old leader's connection must be gone first. The lock queue stays as
   the broker's guard beside the lease (single-active-consumer queues would be another,
   but a deployed quorum queue cannot change its arguments in place: 406);
2. reads its state from the store afresh (a new `Manager`), re-sends the outbox with its
   own epoch, gives every node a full heartbeat interval, and only then consumes.

The leader renews the lease every `renew_every` seconds, on a connection of its own, from
a thread of its own (`Keeper`). It stops acting at once (publishes and acks nothing more,
its open transaction rolled back) when any of these holds, and goes back to being a
standby, in this same process, with nothing of its old term kept:

- a commit finds the lease at another epoch (deposed: `Store` raises Deposed);
- it has not renewed for `length` seconds, counted on its monotonic clock from the
  start of its last renewal that succeeded (the store is gone, or the process was
  stopped: its lease may have expired on the store's clock meanwhile);
- it has been without the broker for `length` seconds (it can neither publish nor
  consume: a standby that can may lead instead);
- its store connection is lost (StoreUnavailable): it competes again once it is back.

A store belongs to one broker vhost: the first manager to lead records its vhost in the
store (`meta`), and a manager on another vhost is refused before it competes for the
lease (`check_vhost`): it would lead an empty vhost while the cluster's own standbys wait.
`--move-to-vhost` records the new one instead, when the cluster really moved.

With SQLite (one manager per database, the embedded default) there are no standbys: the
lease only gives the epoch, and a second manager is refused at start, naming the first.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from manager.store.lease import Holder, Leases, Role
from manager.store.url import connect, sqlite_path
from shared.errors import (
    ResourceLocked,
    SettingsError,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from shared.settings import Settings
from shared.wire import ID_PATTERN

log = logging.getLogger(__name__)

FORGET_AFTER = 3600.0
"""Seconds after which a manager not seen is dropped from the managers table (shown as
gone, in `kube managers`, from two leases on)."""


@dataclass(frozen=True)
class LeaseTimes:
    """How long a lease lasts and how often it is renewed and tried (seconds).

    A leader killed at once is replaced within `length` + `standby_every` (+ the broker's
    noticing its connection is gone: at once for a killed process on a live host); 5 s
    leaves four renewals to fail before a healthy leader loses its lease."""

    length: float = 5.0
    renew_every: float = 1.0
    standby_every: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.length:
            raise SettingsError(
                f"the lease ({self.length:g}s) must be longer than its renewal interval"
                f" ({self.renew_every:g}s)"
            )


@dataclass(frozen=True)
class Identity:
    """Who this manager is, for the lease and `kube managers`."""

    name: str
    host: str
    pid: int

    @classmethod
    def here(cls, name: str | None = None) -> Identity:
        """This process: named `name`, or hostname-pid."""
        host, pid = socket.gethostname() or "localhost", os.getpid()
        chosen = name if name is not None else _tidy(f"{host.split('.')[0]}-{pid}")
        if not re.fullmatch(ID_PATTERN, chosen):
            raise SettingsError(
                f"manager name {chosen!r}: use letters, digits, '.', '_' and '-' (starting"
                " with a letter or digit), at most 63 characters"
            )
        return cls(chosen, host, pid)


def _tidy(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("-_.")[:63] or "manager"


class Lease:
    """The lease as this manager holds it, on its own monotonic clock."""

    def __init__(self, epoch: int, length: float, renewed_at: float) -> None:
        self.epoch = epoch
        self.length = length
        self.renewed_at = renewed_at  # the start of the last renewal that succeeded
        self.lost: str | None = None  # why it was given up, once it was

    def renewed(self, started: float) -> None:
        """A renewal that began at `started` (monotonic) succeeded (the keeper's, or on
        SQLite a commit's: manager/store/state.py)."""
        self.renewed_at = max(self.renewed_at, started)

    def valid(self, now: float) -> bool:
        """Whether this manager may still act: not given up, and renewed within `length`."""
        return self.lost is None and now - self.renewed_at < self.length


class Keeper(threading.Thread):
    """Renews the leader's lease; gives it up (and calls `on_lost`) when it must."""

    def __init__(
        self,
        leases: Leases,
        identity: Identity,
        lease: Lease,
        times: LeaseTimes,
        broker_seen: Callable[[], float],
        on_lost: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
        reopen: Callable[[], Leases] | None = None,
    ) -> None:
        super().__init__(name="lease", daemon=True)
        self.leases, self.identity, self.lease, self.times = leases, identity, lease, times
        self.broker_seen = broker_seen  # monotonic time the broker was last known there
        self.on_lost = on_lost
        self.monotonic = monotonic
        self.reopen = reopen  # a new connection, when the lease's is lost
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.times.renew_every):
                if self.lease.lost is not None:
                    return
                self.renew_once()
        except Exception as exc:  # noqa: BLE001 - no renewal without this thread: stop acting
            log.exception("manager %s: the lease keeper failed", self.identity.name)
            self.give_up(f"the lease keeper failed: {type(exc).__name__}: {exc}")

    def renew_once(self) -> None:
        started = self.monotonic()
        lease, me = self.lease, self.identity
        if started - self.broker_seen() >= lease.length:
            self.give_up(f"without the broker for {started - self.broker_seen():.1f}s")
            return
        try:
            if self.leases.renew(me.name, lease.epoch, lease.length):
                lease.renewed(started)
                self.leases.seen(me.name, me.host, me.pid, Role.LEADER, lease.epoch)
                self.leases.forget(FORGET_AFTER)
            else:
                self.give_up("another manager holds the lease now")
                return
        except StoreBusy:
            # SQLite: the file's write lock is held, by this manager's own batch (one that
            # takes longer than the lease: a 600-replica service) or by a process that
            # cannot change the lease before that lock is free. Nobody can take the lease
            # meanwhile, and the commit that ends the batch renews it in its transaction,
            # fenced by the epoch: the lease is kept. (Stepping down here dropped every
            # long batch and retried it for ever.) Kept from now: it was held until now.
            lease.renewed(self.monotonic())
        except StoreUnavailable as exc:
            log.warning("manager %s: cannot renew the lease: %s", me.name, exc)
            self._reconnect()
        except StoreError as exc:
            log.warning("manager %s: cannot renew the lease: %s", me.name, exc)
        if not lease.valid(self.monotonic()):
            self.give_up(f"the lease was not renewed for {lease.length:g}s")

    def _reconnect(self) -> None:
        if self.reopen is None:
            return
        try:
            fresh = self.reopen()
        except StoreError as exc:
            log.warning("manager %s: the store does not answer: %s", self.identity.name, exc)
            return
        self.leases.close()
        self.leases = fresh

    def give_up(self, why: str) -> None:
        """Stop acting: the manager's next step sees the lease lost and stops."""
        if self.lease.lost is None:
            self.lease.lost = why
            log.error("manager %s: no longer the leader: %s", self.identity.name, why)
            self.on_lost()

    def stop(self, release: bool) -> None:
        """Stop renewing; with `release`, let the lease expire now (a clean stop)."""
        self._halt.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=self.times.length)
        if release and self.lease.lost is None:
            try:
                self.leases.release(self.identity.name, self.lease.epoch)
            except StoreError as exc:
                log.warning("manager %s: could not release the lease: %s", self.identity.name, exc)


def open_leases(store: str) -> Leases:
    """The lease table of a store, on a connection of its own (the store is upgraded
    first by `Store`, so the table exists once a store was opened at this version)."""
    from manager.store.schema import upgrade

    db = connect(store)
    try:
        upgrade(db)
    except BaseException:
        db.close()
        raise
    return Leases(db)


def is_shared(store: str) -> bool:
    """Whether several managers may share the store (PostgreSQL), not SQLite."""
    return sqlite_path(store) is None


def alive(host: str, pid: int) -> bool:
    """Whether the process `pid` may be alive: on another host it cannot be told."""
    if host != (socket.gethostname() or "localhost"):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def check_name(leases: Leases, me: Identity, length: float) -> None:
    """Refuse a name another live manager holds: seen within the last lease, another
    process (on this host, a dead process holds no name)."""
    for seen in leases.managers():
        if seen.name != me.name or seen.ago >= length or (seen.host, seen.pid) == (me.host, me.pid):
            continue
        if alive(seen.host, seen.pid):
            raise ResourceLocked(
                f"another manager is named {me.name} (pid {seen.pid} on {seen.host}, seen"
                f" {seen.ago:.1f}s ago); give this one another --name"
            )


def held_by(leases: Leases, me: Identity | None = None) -> str:
    """Who holds the lease, in words, for a refusal or a standby's notice."""
    holder: Holder = leases.holder()
    if me is not None and holder.name == me.name:
        return (
            f"an earlier run of manager {me.name} (epoch {holder.epoch}; its lease runs out in"
            f" {max(holder.left, 0.0):.1f}s)"
        )
    seen = {m.name: m for m in leases.managers()}.get(holder.name)
    if seen is None:
        return f"manager {holder.name or '(unknown)'}"
    return f"manager {seen.name} (pid {seen.pid} on {seen.host}, epoch {holder.epoch})"


def vhost_of(settings: Settings) -> str:
    """The broker vhost the settings' URLs name (the first's: the URLs of a cluster's
    brokers name one vhost); "/" when a URL names none, as pika does."""
    path = urlsplit(settings.amqp_urls[0]).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class WrongVhost(ResourceLocked):
    """The store's cluster runs on another broker vhost than this manager's."""


def check_vhost(leases: Leases, vhost: str) -> None:
    """Refuse a manager whose vhost is not the one recorded in its store."""
    recorded = leases.vhost()
    if recorded is not None and recorded != vhost:
        raise WrongVhost(
            f"the store {leases.where} belongs to the cluster on broker vhost {recorded!r},"
            f" not {vhost!r} (this manager's); use that vhost, or if the cluster really"
            " moved, start one manager with --move-to-vhost to record the new one"
        )
