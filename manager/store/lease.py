"""The leader's lease and the managers seen, in the store, on a connection of their own.

One row of `leader` says which manager leads, at which epoch (a fencing token that grows
at every takeover), and until when, on the database server's clock (`Database.now`): no
manager's clock takes part. A manager takes the lease when it has expired (or is its
own), and renews it while it leads. Every transaction of the leading manager's store
checks, before it commits, that the row still names its epoch (`Store.fence`): a
takeover bumps the epoch, so a deposed manager's commit fails.

Its own connection, in autocommit, one statement per step: a renewal never waits behind
the store's batch (which holds its transaction open while handlers run), and a slow
batch never delays a renewal past the lease. On PostgreSQL a takeover's UPDATE waits
for the row lock a committing batch holds (`SELECT ... FOR SHARE`): the old leader's
last commit lands before the epoch changes, or fails after.
"""

from __future__ import annotations

from dataclasses import dataclass

from manager.store.base import Database
from shared.models import ManagerRole

Role = ManagerRole


@dataclass(frozen=True)
class Holder:
    """The lease as the store has it: who, at which epoch, for how long still."""

    name: str  # "" while no manager ever held it
    epoch: int
    left: float  # seconds until it expires, on the database's clock (< 0: expired)
    since: float  # when its holder took it, Unix seconds on the database's clock


@dataclass(frozen=True)
class Seen:
    """A manager as it last said it was."""

    name: str
    host: str
    pid: int
    role: Role
    epoch: int  # the epoch it leads at (0: a standby)
    ago: float  # seconds since it said so, on the database's clock


class Leases:
    """The lease and the managers table, on one connection of their own."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.where = db.where

    def acquire(
        self, name: str, length: float, reclaim: bool = False, dead: str | None = None
    ) -> int | None:
        """Take the lease if it expired (or, with `reclaim`, if it is still this
        manager's; or if `dead` holds it, a manager known to be gone), at a new epoch;
        that epoch, or None if another manager holds it."""
        now = self.db.now
        rows = self.db.query(
            f"UPDATE leader SET holder = ?, epoch = epoch + 1, expires = {now} + ?,"
            f" since = {now} WHERE id = 1 AND (expires < {now} OR holder = ? AND ?"
            " OR holder = ?) RETURNING epoch",
            (name, length, name, reclaim, dead),
        )
        return int(rows[0][0]) if rows else None

    def renew(self, name: str, epoch: int, length: float) -> bool:
        """Extend this manager's lease by `length` from now; False if it is no longer its."""
        rows = self.db.query(
            f"UPDATE leader SET expires = {self.db.now} + ?"
            " WHERE id = 1 AND holder = ? AND epoch = ? RETURNING epoch",
            (length, name, epoch),
        )
        return bool(rows)

    def release(self, name: str, epoch: int) -> None:
        """Let the lease expire now (a manager stopping): a standby takes it at once."""
        self.db.execute(
            "UPDATE leader SET expires = 0 WHERE id = 1 AND holder = ? AND epoch = ?",
            (name, epoch),
        )

    def holder(self) -> Holder:
        ((name, epoch, left, since),) = self.db.query(
            f"SELECT holder, epoch, expires - {self.db.now}, since FROM leader WHERE id = 1"
        )
        return Holder(str(name), int(epoch), float(left), float(since))

    def seen(self, name: str, host: str, pid: int, role: Role, epoch: int) -> None:
        """Say that this manager is alive, and what it does."""
        self.db.execute(
            "INSERT INTO managers (name, host, pid, role, epoch, seen)"
            f" VALUES (?, ?, ?, ?, ?, {self.db.now}) ON CONFLICT (name) DO UPDATE SET"
            " host = excluded.host, pid = excluded.pid, role = excluded.role,"
            " epoch = excluded.epoch, seen = excluded.seen",
            (name, host, pid, role.value, epoch),
        )

    def managers(self) -> list[Seen]:
        """Every manager seen, by name."""
        rows = self.db.query(
            f"SELECT name, host, pid, role, epoch, {self.db.now} - seen FROM managers ORDER BY name"
        )
        return [
            Seen(str(n), str(h), int(p), Role(str(r)), int(e), float(a))
            for n, h, p, r, e, a in rows
        ]

    def forget(self, older_than: float) -> None:
        """Forget managers not seen for `older_than` seconds (gone for good)."""
        self.db.execute(f"DELETE FROM managers WHERE seen < {self.db.now} - ?", (older_than,))

    def vhost(self) -> str | None:
        """The broker vhost the store's cluster runs on, once a manager led it."""
        rows = self.db.query("SELECT value FROM meta WHERE key = 'vhost'")
        return str(rows[0][0]) if rows else None

    def claim_vhost(self, vhost: str, move: bool = False) -> str:
        """Record `vhost` as the store's, unless one is already (with `move`: replace it);
        the vhost recorded now."""
        conflict = "DO UPDATE SET value = excluded.value" if move else "DO NOTHING"
        self.db.execute(
            f"INSERT INTO meta (key, value) VALUES ('vhost', ?) ON CONFLICT (key) {conflict}",
            (vhost,),
        )
        recorded = self.vhost()
        assert recorded is not None
        return recorded

    def close(self) -> None:
        self.db.close()
