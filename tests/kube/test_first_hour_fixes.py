"""Small things a newcomer meets in the first hour, each said plainly."""

from __future__ import annotations

import pytest

from kube import cli


def test_ps_refuses_ids_alone_and_json_together(capsys: pytest.CaptureFixture[str]) -> None:
    # when `-q` and `--json` are given together, then neither is silently dropped
    with pytest.raises(SystemExit) as ended:
        cli.main(["ps", "-q", "--json"])
    assert ended.value.code == cli.USAGE
    assert "--json: not allowed with argument -q/--quiet" in capsys.readouterr().err


def test_an_empty_broker_url_is_said_to_be_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # when KUBE_AMQP_URL is set to nothing
    monkeypatch.setenv("KUBE_AMQP_URL", "")
    assert cli.main(["ps"]) == cli.USAGE
    err = capsys.readouterr().err
    # then the message says it is empty, not how to separate URLs with commas
    assert err.startswith("kube: the broker URL is empty (KUBE_AMQP_URL set to nothing"), err
    assert "comma" not in err
