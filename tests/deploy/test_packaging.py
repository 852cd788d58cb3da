"""`pip install .` gives the `kube` command, the typed packages and the JSON Schemas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_the_command_the_markers_and_the_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("kube-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("shared", "manager", "worker", "kube"):
        assert f"{package}/py.typed" in names, package
    assert "shared/schemas/task-spec.schema.json" in names
    assert "kube/up.py" in names and "manager/auth.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kube = kube.cli:main" in text


def test_kube_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kube", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and result.stdout.startswith("kube "), result.stderr
