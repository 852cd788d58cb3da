"""Images the tests run, built locally from the host: nothing is ever pulled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUSYBOX_IMAGE = "localhost/kube-busybox:latest"
PYTHON_BASE_IMAGE = "localhost/kube-python-base:bookworm"
KUBE_IMAGE = "localhost/kube:test"
RABBITMQ_IMAGE = "localhost/kube-rabbitmq:bookworm"
POSTGRES_IMAGE = "localhost/kube-postgres:bookworm"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_BUSYBOX_SCRIPT = _REPO_ROOT / "deploy" / "images" / "busybox.sh"
_PYTHON_BASE_SCRIPT = _REPO_ROOT / "deploy" / "images" / "python-base.sh"
_RABBITMQ_SCRIPT = _REPO_ROOT / "deploy" / "images" / "rabbitmq.sh"
_POSTGRES_SCRIPT = _REPO_ROOT / "deploy" / "images" / "postgres.sh"


def _exists(image: str) -> bool:
    inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    return inspect.returncode == 0


def ensure_busybox_image() -> str:
    """Build the busybox image unless the engine already has it, and return its name."""
    if not _exists(BUSYBOX_IMAGE):
        subprocess.run(
            ["bash", str(_BUSYBOX_SCRIPT)],
            check=True,
            env={**os.environ, "IMAGE": BUSYBOX_IMAGE},
        )
    return BUSYBOX_IMAGE


def build_kube_image(iidfile: Path) -> str:
    """Build deploy/Dockerfile on the local Python base and return the image's id.

    The base is not built here: that takes root and half a minute, and .ci/run does it.
    The image stays, tagged KUBE_IMAGE, and the builder's cached steps with it, so a
    rebuild of unchanged sources takes seconds. Tests run the id, which a build from
    another checkout cannot retag under them.
    """
    _require(PYTHON_BASE_IMAGE, _PYTHON_BASE_SCRIPT)
    build = subprocess.run(
        ["docker", "build", "--file", str(_REPO_ROOT / "deploy" / "Dockerfile"),
         "--build-arg", f"BASE={PYTHON_BASE_IMAGE}", "--tag", KUBE_IMAGE,
         "--iidfile", str(iidfile), str(_REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-4000:]}{build.stderr}"
    return iidfile.read_text().strip()


def rabbitmq_image() -> str:
    """The Debian stand-in for the broker image `kube up --start-broker` runs."""
    return _require(RABBITMQ_IMAGE, _RABBITMQ_SCRIPT)


def postgres_image() -> str:
    """A PostgreSQL server from Debian's packages, run as a task with a volume."""
    return _require(POSTGRES_IMAGE, _POSTGRES_SCRIPT)


def _require(image: str, script: Path) -> str:
    """Images built from Debian's mirror take root and half a minute: .ci/run builds them."""
    if not _exists(image):
        raise AssertionError(
            f"no {image}: run `bash {script.relative_to(_REPO_ROOT)}` as root (.ci/run does)"
        )
    return image
