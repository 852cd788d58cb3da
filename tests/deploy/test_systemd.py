"""deploy/systemd: the units pass `systemd-analyze verify` and read the variables kube reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def test_the_units_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart's program to exist: /opt/kube is where the units expect kube
    for unit, name in (
        ("kube-manager.service", "kube-manager.service"),
        ("kube-worker@.service", "kube-worker@node-1.service"),
    ):
        text = (SYSTEMD / unit).read_text().replace("/opt/kube/bin/kube", "/bin/true")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "kube-manager.service",
         "kube-worker@node-1.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "kube-" in line]
    assert result.returncode == 0 and not ours, result.stderr


def test_the_environment_files_set_what_the_units_and_kube_read() -> None:
    for unit, env in (
        ("kube-manager.service", "manager.env"),
        ("kube-worker@.service", "worker.env"),
    ):
        values = dict(
            line.split("=", 1)
            for line in (SYSTEMD / env).read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert {"KUBE_AMQP_URL", "KUBE_AMQP_CA"} <= values.keys()
        assert values["KUBE_AMQP_URL"].startswith("amqps://")
        used = set(re.findall(r"\$(KUBE_[A-Z_]+)", (SYSTEMD / unit).read_text()))
        assert used <= values.keys(), used - values.keys()
