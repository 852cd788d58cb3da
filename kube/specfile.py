"""Reading a TaskSpec file (`kube run -f`, `kube update -f`): every way it can be unusable
is a SettingsError naming the file and what is wrong with it, a usage error (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.codec import load_json
from shared.errors import DecodeError, SettingsError


def read_spec(path: Path) -> dict[str, Any]:
    """The JSON object in the file (`-`: standard input), as the manager would read it."""
    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not UTF-8 text (a TaskSpec is a JSON object)") from None
    except OSError as exc:  # missing, a directory, not readable
        raise SettingsError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = load_json(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not JSON: {exc}") from None
    except DecodeError as exc:
        raise SettingsError(f"{path}: {exc.reason}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a TaskSpec is a JSON object")
    return data
