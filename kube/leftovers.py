"""What a `kube up` killed outright left behind, found and removed by the next one.

SIGKILL gives `kube up` no chance to clean up: the kernel kills its children
(kube/lifeline.py), but its temporary folder stays, and so do its task containers. The
folder is named after the process that made it (`kube-up-<pid>-...`), so that the next
`kube up` can tell a folder whose maker is gone from one of another `kube up` still
running; the manager's database inside names the cluster whose containers to remove,
and a `runtime` file names the runtime it ran (a folder without one, of an older `kube
up`, is taken as Docker's: its containers may be there).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "kube-up-"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


def scratch() -> tempfile.TemporaryDirectory[str]:
    """This `kube up`'s temporary folder, named after its process."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")


def mark(path: Path, runtime: str) -> None:
    """Write into this `kube up`'s folder the runtime its workers drive."""
    (path / "runtime").write_text(runtime)


def runtime(path: Path) -> str:
    """The runtime the `kube up` of this folder ran ("docker" when it did not say)."""
    try:
        return (path / "runtime").read_text().strip() or "docker"
    except OSError:
        return "docker"


def stale(root: Path | None = None) -> list[Path]:
    """The folders of `kube up` processes that are gone (in the temporary directory)."""
    root = Path(tempfile.gettempdir()) if root is None else root
    found = []
    for path in root.glob(f"{PREFIX}*"):
        match = _NAME.match(path.name)
        if match and _ours(path) and not _alive(int(match.group(1))):
            found.append(path)
    return sorted(found)


def remove(path: Path) -> None:
    """Remove a stale folder; one already removed (by another `kube up`) is fine."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def _ours(path: Path) -> bool:
    """A folder this user made: another user's is not ours to remove."""
    try:
        return path.is_dir() and path.stat().st_uid == os.getuid()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True
