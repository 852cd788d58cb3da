"""docs/cli.md's reference is the CLI's help, block for block: without the global flags
(documented once under Conventions), at the reference's width. To write it again:
`python -m tests.docs.test_cli_reference`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kube.cli import build_parser, service_waited
from kube.examples import reference, subcommands

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCK = re.compile(r"^### kube (?P<path>[a-z ]+)\n\n```\n(?P<help>.*?)```\n", re.M | re.S)


def written(page: str) -> str:
    """The page with every reference block as the CLI's help says it."""
    helps = {path: reference(sub) for path, sub in subcommands(build_parser())}
    return BLOCK.sub(lambda m: f"### kube {m['path']}\n\n```\n{helps[m['path']]}```\n", page)


def test_the_reference_is_the_clis_help_without_global_flags() -> None:
    page = PAGE.read_text()
    blocks = {m["path"]: m["help"] for m in BLOCK.finditer(page)}
    assert "scale" in blocks and "drain" in blocks
    for path, text in blocks.items():
        usage = text.split("\n\n", 1)[0]
        assert "--amqp-url" not in usage and "--timeout SECONDS" not in usage, path
    assert page == written(page), "run `python -m tests.docs.test_cli_reference`"


if __name__ == "__main__":
    PAGE.write_text(written(PAGE.read_text()))


def test_the_json_of_a_service_waited_for_is_the_one_documented() -> None:
    # given the line docs/cli.md shows for `kube run --replicas N --wait --json`
    page = PAGE.read_text()
    shown = re.search(r"`kube run --replicas N --wait --json` prints\n`(\{.*?\})`", page)
    assert shown is not None
    # then it is what the CLI prints, key for key
    documented = json.loads(shown[1])
    assert documented == service_waited("web", "web", 3)
