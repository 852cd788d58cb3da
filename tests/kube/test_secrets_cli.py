"""`kube secret` and `kube config` without a broker: what they read, and the parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube.cli import build_parser
from kube.secrets_cli import _value
from shared.errors import SettingsError
from shared.files import MAX_VALUE_BYTES


def test_a_value_is_read_whole_up_to_the_limit_and_refused_past_it(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * MAX_VALUE_BYTES)
    assert len(_value(str(exact))) == MAX_VALUE_BYTES
    over = tmp_path / "over"
    over.write_bytes(b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(SettingsError, match=f"{over}: the value is over 512000 bytes"):
        _value(str(over))


@pytest.mark.parametrize("kind", ["secret", "config"])
def test_the_value_comes_from_stdin_unless_a_file_is_named(kind: str) -> None:
    parser = build_parser()
    assert parser.parse_args([kind, "create", "pw"]).file == "-"
    assert parser.parse_args([kind, "update", "pw", "v.txt"]).file == "v.txt"
    assert parser.parse_args([kind, "rm", "pw"]).name == "pw"
    assert parser.parse_args([kind, "ls", "--json"]).json
