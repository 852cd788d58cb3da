"""Variable interpolation in a stack file, as Compose does it (compose-spec 12-interpolation.md).

    $VAR  ${VAR}             the value, or "" when unset (a warning names it)
    ${VAR:-default}          default when VAR is unset or empty;  ${VAR-default}: only unset
    ${VAR:?message}          an error when VAR is unset or empty; ${VAR?message}: only unset
    ${VAR:+replacement}      replacement when VAR is set and not empty; ${VAR+replacement}: set
    $$                       a literal $

Defaults, messages and replacements are interpolated too (`${A:-${B}}`). Values come from
a mapping (the environment over the `.env` file beside the stack file); a `.env` or an
`env_file` is read by `read_env_file`. Pure: nothing here reads the process's environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A `${VAR?message}` whose VAR is missing, or a `$` expression kube cannot read."""


@dataclass
class Interpolator:
    """Interpolates strings from `values`; `unset` collects the variables used but not set."""

    values: Mapping[str, str]
    unset: list[str] = field(default_factory=list)

    def text(self, text: str) -> str:
        out: list[str] = []
        at = 0
        while True:
            dollar = text.find("$", at)
            if dollar < 0:
                return "".join([*out, text[at:]])
            out.append(text[at:dollar])
            value, at = self._expression(text, dollar)
            out.append(value)

    def _expression(self, text: str, dollar: int) -> tuple[str, int]:
        """The value of the expression at text[dollar] (a `$`), and where the rest begins."""
        after = text[dollar + 1 : dollar + 2]
        if after == "$":
            return "$", dollar + 2
        if after == "{":
            end = _closing_brace(text, dollar + 2)
            return self._braced(text[dollar + 2 : end]), end + 1
        name = NAME.match(text, dollar + 1)
        if name is None:
            raise InterpolationError(
                f"{text!r}: a '$' not followed by a name or '{{' (write '$$' for a '$')"
            )
        return self._lookup(name.group()), name.end()

    def _braced(self, inner: str) -> str:
        name = NAME.match(inner)
        if name is None:
            raise InterpolationError(f"'${{{inner}}}': not a variable name")
        var, rest = name.group(), inner[name.end() :]
        if not rest:
            return self._lookup(var)
        colon = rest.startswith(":")
        op, arg = (rest[1:2], rest[2:]) if colon else (rest[:1], rest[1:])
        if op not in ("-", "?", "+"):
            raise InterpolationError(f"'${{{inner}}}': unknown operator {rest[: 1 + colon]!r}")
        value = self.values.get(var)
        present = value is not None and (not colon or value != "")
        if op == "-":
            return str(value) if present else self.text(arg)
        if op == "+":
            return self.text(arg) if present else ""
        if not present:
            raise InterpolationError(
                f"{var} is {'unset or empty' if colon else 'unset'}: {self.text(arg) or 'required'}"
            )
        return str(value)

    def _lookup(self, var: str) -> str:
        value = self.values.get(var)
        if value is None:
            if var not in self.unset:
                self.unset.append(var)
            return ""
        return value


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` that closes the `${` before `start`, nested ones skipped."""
    depth = 1
    for at in range(start, len(text)):
        if text.startswith("${", at):
            depth += 1
        elif text[at] == "}":
            depth -= 1
            if depth == 0:
                return at
    raise InterpolationError(f"{text!r}: '${{' without its '}}'")


def read_env_file(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines, as Compose reads a `.env` or an `env_file`: blank lines and lines
    starting with `#` skipped, `export ` allowed before the key, a value in single quotes
    taken as it is, in double quotes with `\\n` escapes, unquoted up to ` #`. A line
    `KEY` alone is not kept (its value would come from the environment: give it there)."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not NAME.fullmatch(key):
            raise InterpolationError(f"line {number}: {key!r} is not a variable name")
        if not sep:
            continue
        found[key] = _value(value.strip())
    return found


def _value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace("\\n", "\n").replace('\\"', '"')
    comment = value.find(" #")
    return (value if comment < 0 else value[:comment]).rstrip()
