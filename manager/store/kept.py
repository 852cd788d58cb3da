"""The kept end of ended attempts' output, per (task, attempt): its table's SQL.

Rows are written by the manager when a worker sends an attempt's `KeptOutput`, at most
KEEP_ATTEMPTS per task (the newest attempts), and deleted with their task (`kube rm`,
retention). Both engines speak this SQL (manager/store/base.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from manager.store.base import Database
from shared.kept import KeptLogs

COLUMNS = "task_id, attempt, node, exit_code, at, cut, stdout, stderr"


def create(db: Database) -> None:
    """Schema step 6: the table of kept output."""
    text, integer = db.types["text"], db.types["int"]
    db.execute(
        f"CREATE TABLE IF NOT EXISTS kept_output (task_id {text} NOT NULL,"
        f" attempt {integer} NOT NULL, node {text} NOT NULL, exit_code {integer},"
        f" at {text} NOT NULL, cut {integer} NOT NULL, stdout {text} NOT NULL,"
        f" stderr {text} NOT NULL,"
        " PRIMARY KEY (task_id, attempt))"
    )


def put(db: Database, kept: KeptLogs, keep: int) -> None:
    """Keep one attempt's output (again: the newest read wins, an exit code once known
    stays), then drop the task's attempts beyond the newest `keep`."""
    db.execute(
        f"INSERT INTO kept_output ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (task_id, attempt) DO UPDATE SET node = excluded.node,"
        " exit_code = COALESCE(excluded.exit_code, kept_output.exit_code), at = excluded.at,"
        " cut = excluded.cut, stdout = excluded.stdout, stderr = excluded.stderr",
        (
            kept.task_id,
            kept.attempt,
            kept.node,
            kept.exit_code,
            kept.at.isoformat(),
            int(kept.cut),
            # PostgreSQL's text holds no NUL; the worker replaces them already
            kept.stdout.replace("\x00", "\ufffd"),
            kept.stderr.replace("\x00", "\ufffd"),
        ),
    )
    db.execute(
        "DELETE FROM kept_output WHERE task_id = ? AND attempt NOT IN (SELECT attempt FROM"
        " kept_output WHERE task_id = ? ORDER BY attempt DESC LIMIT ?)",
        (kept.task_id, kept.task_id, keep),
    )


def get(db: Database, task_id: str, attempt: int | None) -> KeptLogs | None:
    """The kept output of one attempt of a task, or of its newest kept one."""
    if attempt is None:
        rows = db.query(
            f"SELECT {COLUMNS} FROM kept_output WHERE task_id = ? ORDER BY attempt DESC LIMIT 1",
            (task_id,),
        )
    else:
        rows = db.query(
            f"SELECT {COLUMNS} FROM kept_output WHERE task_id = ? AND attempt = ?",
            (task_id, attempt),
        )
    return _logs(rows[0]) if rows else None


def exit_codes(db: Database, task_id: str) -> dict[int, int | None]:
    """The attempts of a task whose output is kept, with their exit codes if known."""
    rows = db.query(
        "SELECT attempt, exit_code FROM kept_output WHERE task_id = ? ORDER BY attempt",
        (task_id,),
    )
    return {int(attempt): None if code is None else int(code) for attempt, code in rows}


def delete(db: Database, task_ids: list[tuple[str]]) -> None:
    """Forget the kept output of removed tasks."""
    db.executemany("DELETE FROM kept_output WHERE task_id = ?", task_ids)


def _logs(row: tuple[Any, ...]) -> KeptLogs:
    task_id, attempt, node, exit_code, at, cut, stdout, stderr = row
    return KeptLogs(
        task_id=task_id,
        attempt=int(attempt),
        node=node,
        exit_code=None if exit_code is None else int(exit_code),
        at=datetime.fromisoformat(at),
        cut=bool(cut),
        stdout=stdout,
        stderr=stderr,
    )
