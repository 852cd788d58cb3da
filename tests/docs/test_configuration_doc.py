"""docs/configuration.md names every environment variable kube reads."""

from __future__ import annotations

import re

from tests.support.docblocks import ROOT

PACKAGES = ("shared", "manager", "worker", "kube")


def test_every_variable_kube_reads_is_in_the_configuration_page() -> None:
    read = {
        name
        for package in PACKAGES
        for source in (ROOT / package).rglob("*.py")
        for name in re.findall(r"\"(KUBE_[A-Z_]+)\"", source.read_text())
    }
    assert "KUBE_AMQP_URL" in read and "KUBE_OPERATOR_USERS" in read
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = set(re.findall(r"^\| `(KUBE_[A-Z_]+)` \|", page, re.M))
    assert sorted(read - table) == []
