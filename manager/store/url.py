"""Which database a store URL names, and a connection to it.

sqlite:///var/lib/kube/manager.db   a SQLite file, by its absolute path
sqlite:manager.db                   a SQLite file, relative to the working directory
postgresql://user@host:5432/kube    a PostgreSQL database (any libpq URL; postgres:// too)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from manager.store.base import Database
from shared.errors import SettingsError

SQLITE_FORMS = "sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH"
FORMS = f"{SQLITE_FORMS}, or postgresql://USER@HOST:PORT/DATABASE"


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file (made absolute)."""
    return f"sqlite://{Path(path).absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The file a sqlite: URL names, None for a URL of another engine."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        if parts.scheme not in ("postgresql", "postgres"):
            shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
            raise SettingsError(f"store {shown!r}: not a store URL; give {FORMS}")
        return None
    if parts.netloc or not parts.path or parts.query or parts.fragment:
        raise SettingsError(f"store {url!r}: a SQLite store is {SQLITE_FORMS}")
    return Path(unquote(parts.path))


def check(url: str) -> str:
    """The URL, if it names a store; a SettingsError saying what is wrong if not."""
    sqlite_path(url)
    return url


def connect(target: str | Path, readonly: bool = False) -> Database:
    """A connection to the database a URL (or a SQLite file's path) names. A read-only
    one, for another thread's reads, never creates the database."""
    if isinstance(target, Path):
        path: Path | None = target
    else:
        path = sqlite_path(target)
    if path is not None:
        from manager.store.sqlite import SqliteDatabase

        return SqliteDatabase(path, readonly=readonly)
    from manager.store.postgres import PostgresDatabase  # psycopg only when asked for

    return PostgresDatabase(str(target))
