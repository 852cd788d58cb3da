"""`kube completion bash|zsh`: the shell code that completes kube's commands and flags
with argcomplete, to eval in the shell's startup file."""

from __future__ import annotations

import argparse
from typing import Any

import argcomplete
from argcomplete.shell_integration import shellcode

SHELLS = ("bash", "zsh")


def add_parser(sub: Any) -> None:
    completion = sub.add_parser(
        "completion",
        help="print the shell code that completes kube's commands (eval it)",
        description="Print the code that completes kube's commands and flags in bash or"
        " zsh (zsh: after `autoload -U compinit && compinit`).",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh")


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when the shell asked for one
    (_ARGCOMPLETE in the environment); else nothing."""
    argcomplete.autocomplete(parser)


def run(args: argparse.Namespace) -> int:
    print(shellcode(["kube"], shell=args.shell), end="")
    return 0
