"""Store URLs: which database each names, and what a bad one is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.store import Store, sqlite_url
from manager.store.url import sqlite_path
from shared.errors import SettingsError, StoreError


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/kube/manager.db", Path("/var/lib/kube/manager.db")),
        ("sqlite:state/manager.db", Path("state/manager.db")),
        ("sqlite:///srv/my%20kube/m.db", Path("/srv/my kube/m.db")),
        ("postgresql://kube@db:5432/kube", None),
        ("postgres://kube@db/kube?sslmode=require", None),
    ],
)
def test_a_store_url_names_a_sqlite_file_or_another_engine(url: str, path: Path | None) -> None:
    assert sqlite_path(url) == path


def test_a_sqlite_files_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url(Path("m.db")) == f"sqlite://{tmp_path}/m.db"
    assert sqlite_path(sqlite_url(Path("m.db"))) == tmp_path / "m.db"


def test_a_url_of_no_store_is_refused_without_showing_its_password() -> None:
    with pytest.raises(SettingsError, match="not a store URL") as refused:
        sqlite_path("postgress://kube:s3cret@db/kube")
    assert "s3cret" not in str(refused.value)


def test_a_postgresql_server_that_does_not_answer_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot open the manager database") as failed:
        Store("postgresql://kube:s3cret@127.0.0.1:1/kube")
    assert "postgresql://kube@127.0.0.1:1/kube" in str(failed.value)
    assert "s3cret" not in str(failed.value)
