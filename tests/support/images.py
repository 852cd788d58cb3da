"""Images the tests run, built locally from the host: nothing is ever pulled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUSYBOX_IMAGE = "localhost/kube-busybox:latest"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_BUSYBOX_SCRIPT = _REPO_ROOT / "deploy" / "images" / "busybox.sh"


def ensure_busybox_image() -> str:
    """Build the busybox image unless the engine already has it, and return its name."""
    inspect = subprocess.run(
        ["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True, check=False
    )
    if inspect.returncode != 0:
        subprocess.run(
            ["bash", str(_BUSYBOX_SCRIPT)],
            check=True,
            env={**os.environ, "IMAGE": BUSYBOX_IMAGE},
        )
    return BUSYBOX_IMAGE
