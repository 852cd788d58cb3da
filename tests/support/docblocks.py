"""The examples of README.md and docs/*.md, found by the marker above each one, so that
the tests run them as written: `<!-- NAME -->` (or `<!-- NAME: ... -->`) on the line
before a fenced block."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def block(page: str, marker: str) -> str:
    """The fenced block after `<!-- marker` in the page (a path from the checkout's root)."""
    text = (ROOT / page).read_text()
    found = re.search(rf"^<!-- {re.escape(marker)}\b.*?-->\n", text, re.M)
    assert found is not None, f"{page} has no block marked {marker!r}"
    fenced = FENCE.match(text, found.end())
    assert fenced is not None, f"{page}: no fenced block right after the marker {marker!r}"
    return fenced.group(1)


def commands(text: str) -> list[str]:
    """A shell block's command lines, each without its trailing `  # comment`."""
    lines = (line.split("  #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]
