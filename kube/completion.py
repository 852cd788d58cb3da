"""`kube completion bash|zsh`: the shell code that completes kube's commands and flags
with argcomplete, to eval in the shell's startup file."""

from __future__ import annotations

import argparse
import os
from typing import Any

import argcomplete
from argcomplete.completers import SuppressCompleter
from argcomplete.shell_integration import shellcode

from kube.examples import subcommands

SHELLS = ("bash", "zsh")


def add_parser(sub: Any) -> None:
    completion = sub.add_parser(
        "completion",
        help="print the shell code that completes kube's commands (eval it)",
        description="Print the code that completes kube's commands and flags in bash or"
        " zsh (zsh: after `autoload -U compinit && compinit`).",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh")


FILE_ARGUMENTS = ("container_command", "file")
"""Positional arguments that may be file names: `kube run ... -- COMMAND` (a script),
`kube secret create NAME FILE`."""


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when the shell asked for one
    (_ARGCOMPLETE in the environment); else nothing.

    A positional argument that names a task, service or node completes to nothing, not
    to the file names of the current folder (argcomplete's default): asking the cluster
    for names on every Tab would wait on the broker."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    for _, sub in subcommands(parser):
        for action in sub._actions:
            positional = not action.option_strings and action.choices is None
            if positional and action.dest not in FILE_ARGUMENTS:
                action.completer = SuppressCompleter()  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


COMPLETE_OPTIONS = ("-o", "nospace")
"""bash's `complete` options: not argcomplete's `-o default -o bashdefault`, with which
bash offers the folder's file names whenever kube offers nothing (a task, service or
node argument); where a file may be given, kube itself offers the file names."""


def run(args: argparse.Namespace) -> int:
    print(shellcode(["kube"], shell=args.shell, complete_arguments=COMPLETE_OPTIONS), end="")
    return 0
