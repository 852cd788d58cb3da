"""The flags that set single spec fields (kube/task_flags.py, kube/rollout.py): parsed
and applied without a broker."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest

from kube import rollout, task_flags
from kube.cli import build_parser, main
from kube.client import make_spec
from shared.errors import SettingsError
from shared.models import ServiceRecord, TaskSpec
from shared.specs import RestartMode


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_env_key_alone_takes_its_value_from_the_callers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBE_TEST_TOKEN", "s3cret=1")
    args = parse("run", "--name", "a", "--image", "i", "--env", "KUBE_TEST_TOKEN", "--env", "X=")
    assert args.env == [("KUBE_TEST_TOKEN", "s3cret=1"), ("X", "")]


def test_env_key_unset_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBE_TEST_UNSET", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--name", "a", "--image", "i", "--env", "KUBE_TEST_UNSET"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "KUBE_TEST_UNSET is not set in this environment" in err
    assert len(err.strip().splitlines()) == 1


def fields(*argv: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    return task_flags.spec_fields(parse("run", *argv), base or {})


def test_restart_flags_make_the_restart_policy() -> None:
    assert fields() == {}
    assert fields("--restart", "no") == {"restart": {"policy": "never"}}
    got = fields("--restart", "always", "--unlimited-restarts", "--restart-delay", "2")
    spec = make_spec({"name": "a", "image": "i", **got})
    assert spec.restart.policy == RestartMode.ALWAYS
    assert spec.restart.max_restarts is None and spec.restart.backoff_seconds == 2
    base = {"restart": {"policy": "always", "max_restarts": 5, "backoff_seconds": 1.0}}
    assert fields("--max-restarts", "0", base=base)["restart"] == {
        "policy": "always",
        "max_restarts": 0,
        "backoff_seconds": 1.0,
    }


def test_health_flags_make_the_health_check() -> None:
    got = fields(
        "--health-cmd", "test -f /ready", "--health-interval", "5", "--health-retries", "2"
    )
    spec = make_spec({"name": "a", "image": "i", **got})
    assert spec.health_check is not None
    assert spec.health_check.exec == ("sh", "-c", "test -f /ready")
    assert (spec.health_check.interval_seconds, spec.health_check.failures) == (5, 2)
    http = fields("--health-http", "8080/healthz")["health_check"]
    assert http == {"http": {"port": 8080, "path": "/healthz"}}
    assert fields("--health-http", "80")["health_check"] == {"http": {"port": 80, "path": "/"}}
    # a timing alone changes the check the spec has; a probe replaces its probe
    base = {"health_check": {"tcp": {"port": 5432}, "http": None, "exec": None, "failures": 3}}
    assert fields("--health-retries", "7", base=base)["health_check"]["failures"] == 7
    replaced = fields("--health-cmd", "true", base=base)["health_check"]
    assert replaced == {"exec": ["sh", "-c", "true"], "failures": 3}
    assert fields("--no-health-check", base=base) == {"health_check": None}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("--health-cmd", "true", "--health-tcp", "80"), "give one health check, not"),
        (
            (
                "--health-interval",
                "5",
            ),
            "need a check: give --health-cmd",
        ),
        (("--health-http", "x/y"), "give PORT or PORT/PATH"),
        (("--no-health-check", "--health-tcp", "1"), r"takes no other --health-\* flag"),
        (("--max-restarts", "1", "--unlimited-restarts"), "not both"),
    ],
)
def test_contradicting_flags_are_refused_saying_why(argv: tuple[str, ...], said: str) -> None:
    with pytest.raises(SettingsError, match=said):  # a regular expression
        fields(*argv)


def test_update_changes_only_the_fields_given_on_the_current_spec() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    spec = TaskSpec(name="web", image="nginx:1", env={"A": "1", "OLD": "x"}, replicas=2)
    service = ServiceRecord(name="web", spec=spec, replicas=5, created_at=now, updated_at=now)
    args = parse(
        "update", "web", "--image", "nginx:2", "--env", "B=2", "--env-rm", "OLD", "--memory", "64m"
    )
    sent = make_spec(rollout.changed(args, rollout.current_spec(service)))
    assert sent.image == "nginx:2" and sent.env == {"A": "1", "B": "2"}
    assert sent.memory == 64 * 1024**2
    assert sent.replicas == 5  # what the service keeps now (scaled), not its spec's first 2
    assert sent.model_dump(exclude={"image", "env", "memory", "replicas"}) == spec.model_dump(
        exclude={"image", "env", "memory", "replicas"}
    )


def test_update_without_a_file_or_a_field_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["update", "web"])
    assert exited.value.code == 2
    assert "give -f FILE, or the fields to change" in capsys.readouterr().err
