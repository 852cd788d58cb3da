"""Every `kube ...` command in the code blocks of README.md and docs/*.md is one the CLI
takes: run against a broker that is not there, it gets as far as the broker (exit 5),
never a usage error (exit 2). What the commands then do is run by the tests that name
them (tests/e2e/test_quick_start.py, tests/multihost/test_across_machines.py, ...)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from kube import cli
from tests.support.docblocks import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
INDENTED = re.compile(r"(?:^\n)((?:^    .*\n)+)", re.M)
ENV = re.compile(r"^(?:[A-Z_]+=\S+\s+)+")
# These run until stopped (or start a broker): tests/e2e and tests/kube run them for real.
SERVERS = ("manager", "worker", "up")
NO_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"
USAGE = 2


def code_lines(page: Path) -> list[str]:
    text = page.read_text()
    blocks = [m.group(1) for m in FENCED.finditer(text)]
    rest = FENCED.sub("", text)
    blocks += [re.sub(r"^    ", "", m.group(1), flags=re.M) for m in INDENTED.finditer(rest)]
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()]


def kube_commands() -> list[tuple[str, str]]:
    """(page, command) for each command line a person would type; a synopsis, with
    `[optional]` parts or `a|b` choices, is not one."""
    found = []
    for page in PAGES:
        for line in code_lines(page):
            line = re.split(r"\s#\s", ENV.sub("", line.removeprefix("$ ")), maxsplit=1)[0]
            line = line.strip()
            # `kube stop $(kube ps -q ...)`: both commands, the inner one's ids an id
            for inner in re.findall(r"\$\((kube [^)]*)\)", line):
                found.append((str(page.relative_to(ROOT)), inner.split(" | ")[0].strip()))
            line = re.sub(r"\$\(kube [^)]*\)", "web-1a2b3c4d", line)
            # output (`kube up: ...`) and prose are not commands either
            if not re.match(r"kube [a-z-]+(\s|$)", line) or re.search(r"\[|\||\.\.\.", line):
                continue
            if shlex.split(line)[1] in SERVERS:
                continue
            found.append((str(page.relative_to(ROOT)), line))
    return found


COMMANDS = kube_commands()


def test_the_pages_show_commands() -> None:
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "docs/services.md", "docs/nodes.md", "docs/tasks.md"} <= pages
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_a_command_the_docs_show_is_one_the_cli_takes(
    page: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given no broker, and the spec files the command names
    monkeypatch.setenv("KUBE_AMQP_URL", NO_BROKER)
    monkeypatch.setenv("KUBE_TIMEOUT", "1")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--env" and "=" not in value:  # `--env KEY` takes the caller's value
            monkeypatch.setenv(value, "from the environment")
    for name in (a for a in argv if a.endswith(".json")):
        (tmp_path / name).write_text(json.dumps({"name": "web", "image": "busybox"}))
    for name in (a for a in argv if a.endswith(".yaml")):  # a stack file, read before asking
        shutil.copytree((ROOT / name).parent, tmp_path / Path(name).parent, dirs_exist_ok=True)
    # when it runs, then it fails for want of a broker, not for its words
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else USAGE
    assert code != USAGE, f"{page}: `{line}` is not a command the CLI takes"
