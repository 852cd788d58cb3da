"""One source for defaults: flags left out keep the config's own (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube.cli import build_parser, manager_config
from manager.config import ManagerConfig
from worker.config import WorkerConfig


def test_a_manager_started_without_flags_runs_with_the_configs_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    config = manager_config(build_parser().parse_args(["manager"]))
    assert config == ManagerConfig()
    assert config.db_path == tmp_path / "kube" / "manager.db"


def test_a_flag_given_overrides_its_default_only() -> None:
    args = build_parser().parse_args(["manager", "--node-down-after", "9", "--max-nodes", "3"])
    config = manager_config(args)
    assert (config.node_down_after, config.max_nodes) == (9, 3)
    assert config.heartbeat_interval == ManagerConfig().heartbeat_interval


def test_the_worker_flags_leave_the_worker_defaults_alone() -> None:
    args = build_parser().parse_args(["worker"])
    assert args.heartbeat_interval is None and args.concurrency is None
    assert WorkerConfig(name="n").heartbeat_interval == 2.0
