"""`kube completion bash|zsh`: the printed code, eval'ed in a real bash, completes kube's
commands and flags through the installed `kube` entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def complete(line: str) -> list[str]:
    """What bash offers for `line` (the cursor at its end), with kube's completion loaded."""
    script = (
        'eval "$(kube completion bash)"\n'
        'read -r -a COMP_WORDS <<< "$LINE"\n'
        '[[ "$LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        'COMP_LINE="$LINE"; COMP_POINT=${#LINE}\n'
        "_python_argcomplete kube\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LINE": line}
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [word.strip() for word in done.stdout.splitlines() if word.strip()]


@pytest.mark.skipif(
    shutil.which("bash") is None or not (BIN / "kube").exists(), reason="needs bash and kube"
)
def test_the_bash_completion_completes_commands_and_flags() -> None:
    assert complete("kube p") == ["ps"]
    assert complete("kube res") == ["restart"]
    assert set(complete("kube ps --s")) == {"--state", "--service"}
    assert complete("kube completion z") == ["zsh"]


def test_the_zsh_code_registers_kube_with_compdef() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kube", "completion", "zsh"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#compdef kube")
    assert "compdef _python_argcomplete kube" in done.stdout


@pytest.mark.skipif(
    shutil.which("bash") is None or not (BIN / "kube").exists(), reason="needs bash and kube"
)
def test_a_task_argument_completes_to_no_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a folder holding a file, where the user presses Tab after `kube inspect `
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    # then no file name is offered for a task, a service or a node
    for line in ("kube inspect ", "kube stop ", "kube logs ", "kube scale ", "kube drain "):
        offered = complete(line)
        assert "notes.txt" not in offered, (line, offered)
    # and a file is still offered where one may be given
    assert "notes.txt" in complete("kube run -f ")


@pytest.mark.skipif(
    shutil.which("bash") is None or not (BIN / "kube").exists(), reason="needs bash and kube"
)
def test_bash_falls_back_to_no_file_names_when_kube_offers_none() -> None:
    # given the bash code loaded, then `complete -p kube` has no fallback to file names
    script = 'eval "$(kube completion bash)"\ncomplete -p kube\n'
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[-1] == "kube" and "_python_argcomplete" in words, done.stdout
    assert "default" not in words and "bashdefault" not in words, done.stdout
