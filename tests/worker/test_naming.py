"""A worker's default node name is unique per host (worker/naming.py)."""

from __future__ import annotations

import re

from shared.wire import ID_PATTERN
from worker.naming import default_name, this_host


def test_a_distinct_host_name_is_the_node_name() -> None:
    assert default_name("web-1.dc2.example.com", "3d1219c7c4c5") == "web-1.dc2.example.com"


def test_a_common_host_name_gets_the_machine_id() -> None:
    assert default_name("localhost", "3d1219c7c4c5aa") == "localhost-3d1219c7"
    assert default_name("Debian", "abcdef0123") == "Debian-abcdef01"
    assert default_name("localhost", None) == "localhost"  # no id to tell them apart


def test_the_name_is_always_a_valid_node_name() -> None:
    for host in ("", "_x", "a b/c", "x" * 300, "ünïcode"):
        assert re.match(ID_PATTERN, default_name(host, "3d1219c7")), host
    assert re.match(ID_PATTERN, this_host())
