"""One source for defaults: flags left out keep the config's own (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube.cli import build_parser, manager_config
from manager.config import ManagerConfig
from shared.errors import SettingsError
from worker.config import WorkerConfig


def test_a_manager_started_without_flags_runs_with_the_configs_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("KUBE_STORE", raising=False)
    config = manager_config(build_parser().parse_args(["manager"]))
    assert config == ManagerConfig()
    assert config.store == f"sqlite://{tmp_path / 'kube' / 'manager.db'}"


@pytest.mark.parametrize(
    ("flags", "env", "store"),
    [
        (["--store", "postgresql://kube@db:5432/kube"], {}, "postgresql://kube@db:5432/kube"),
        ([], {"KUBE_STORE": "postgresql://kube@db/kube"}, "postgresql://kube@db/kube"),
        (["--store", "sqlite:///a.db"], {"KUBE_STORE": "postgresql://db/k"}, "sqlite:///a.db"),
        (
            ["--db", "/var/kube/m.db"],
            {"KUBE_STORE": "postgresql://db/k"},
            "sqlite:///var/kube/m.db",
        ),
    ],
)
def test_the_store_is_a_flag_then_kube_store_then_the_default(
    flags: list[str], env: dict[str, str], store: str
) -> None:
    config = manager_config(build_parser().parse_args(["manager", *flags]), env)
    assert config.store == store


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--store", "mysql://db/kube"], "not a store URL; give sqlite:///ABSOLUTE/PATH"),
        (["--store", "sqlite://relative.db"], "a SQLite store is sqlite:///ABSOLUTE/PATH"),
        (["--store", "sqlite:///a.db", "--db", "b.db"], "give --store or --db, not both"),
    ],
)
def test_a_store_that_is_not_one_is_refused_saying_what_is_accepted(
    flags: list[str], why: str
) -> None:
    with pytest.raises(SettingsError, match=why):
        manager_config(build_parser().parse_args(["manager", *flags]), {})


def test_a_flag_given_overrides_its_default_only() -> None:
    args = build_parser().parse_args(["manager", "--node-down-after", "9", "--max-nodes", "3"])
    config = manager_config(args)
    assert (config.node_down_after, config.max_nodes) == (9, 3)
    assert config.heartbeat_interval == ManagerConfig().heartbeat_interval


def test_the_worker_flags_leave_the_worker_defaults_alone() -> None:
    args = build_parser().parse_args(["worker"])
    assert args.heartbeat_interval is None and args.concurrency is None
    assert WorkerConfig(name="n").heartbeat_interval == 2.0
