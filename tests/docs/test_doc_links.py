"""README.md and docs/*.md hold together: every relative link names a file of the checkout,
and every `#anchor` a heading of the page it points to (as GitHub makes anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.docblocks import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS, ROOT / "docs" / "examples" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCED.sub("", page.read_text())
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = FENCED.sub("", page.read_text())
    return [m.group(1) for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m.group(1))]


def test_the_anchor_of_a_heading_is_githubs() -> None:
    assert anchor("Watching: exchange `kube.events` (topic, durable)") == (
        "watching-exchange-kubeevents-topic-durable"
    )
    assert anchor("`kube up` with standbys") == "kube-up-with-standbys"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_a_page_leads_somewhere(page: Path) -> None:
    broken = []
    for link in links(page):
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no heading #{fragment} in {target.relative_to(ROOT)}")
    assert broken == []


def test_the_readme_links_every_doc() -> None:
    # moved sections must stay findable from the front page
    readme = {(ROOT / link.partition("#")[0]).resolve() for link in links(ROOT / "README.md")}
    assert [p.name for p in DOCS if p not in readme] == []
