"""The manager's state, in SQLite (the default, one manager) or PostgreSQL.

state.py     Store: what the manager records and reads, caches, per-delivery units
files.py     the rows of secrets and configs, encrypted
schema.py    the tables, their version, and the upgrade of an older database
base.py      Database: what the store needs of an engine
sqlite.py    that, on a SQLite file
postgres.py  that, on PostgreSQL (psycopg 3)
url.py       which engine and database a store URL names
"""

from manager.store.state import Store, read_cluster_id
from manager.store.url import check, connect, sqlite_url

__all__ = ["Store", "check", "connect", "read_cluster_id", "sqlite_url"]
