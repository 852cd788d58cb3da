"""Reading a stack file: YAML (PyYAML's safe loader, duplicate keys refused), variables
interpolated from the environment over the `.env` beside the file, then checked against
the Compose specification's own JSON Schema (schemas/compose-spec.json, vendored).

Every problem is a StackFileError naming the file and the key path
(`stack.yaml: services.web.deploy.replicas: ...`), a usage error (exit 2)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kube.stack.interpolate import InterpolationError, Interpolator, read_env_file
from shared.errors import SettingsError

SCHEMA = "compose-spec.json"
"""compose-spec/compose-spec `schema/compose-spec.json` at commit 170098ba (2026-06-23),
Apache-2.0: schemas/COMPOSE-SPEC-LICENSE and COMPOSE-SPEC-NOTICE beside it."""


class StackFileError(SettingsError):
    """A stack file kube cannot deploy; the message names the file and the key path."""


def where(*path: object) -> str:
    """A key path as the errors show it: `services.web.ports[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class StackFile:
    """A stack file read and interpolated: its path, its content, the variables it used
    that were not set (Compose warns of them and uses "")."""

    path: Path
    data: dict[str, Any]
    unset: tuple[str, ...] = ()

    def error(self, problem: str, *path: object) -> StackFileError:
        at = where(*path)
        return StackFileError(f"{self.path}: {at + ': ' if at else ''}{problem}")


MAX_NODES = 100_000
"""The most values a stack file may hold once its aliases are expanded (each `*name`
counts its anchor's values again): a real file holds a few thousand; a few hundred bytes
of nested anchors (an alias bomb) would expand to billions."""

MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (Compose refuses it; the
    plain loader keeps the last silently). Merge keys (`<<: *fragment`, `<<: [*a, *b]`)
    are taken as Compose takes them: the keys written beside `<<` win over the merged."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue  # merged by construct_mapping (flatten_mapping), under the written keys
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read(path: Path, environ: Mapping[str, str]) -> StackFile:
    """The stack file at `path`, interpolated from `environ` over `.env` beside it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StackFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise StackFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = _load(text)
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    except _TooLarge as exc:
        raise StackFileError(f"{path}: {exc}") from None
    except RecursionError:
        raise StackFileError(f"{path}: not YAML kube reads: nested too deeply") from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: a stack file is a mapping with `services`")
    values = {**dotenv(path.parent / ".env"), **environ}
    interpolator = Interpolator(values)
    document = StackFile(path, _interpolate(interpolator, data, path, ()))
    check_schema(document)
    return StackFile(path, document.data, tuple(interpolator.unset))


class _TooLarge(Exception):
    """A document whose aliases expand past MAX_NODES, or refer to themselves."""


def _load(text: str) -> Any:
    """The document's data, its node graph measured first: the aliases are expanded by
    what walks the data (interpolation, the schema), so a document too large once
    expanded is refused before anything walks it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values the node holds with its aliases expanded (each node measured once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise _TooLarge(f"line {node.start_mark.line + 1}: an alias refers to its own anchor")
    size = 1
    if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
        open_.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else _pairs(node.value)
        size += sum(_expanded(child, sizes, open_) for child in children)
        open_.discard(id(node))
    if size > MAX_NODES:
        raise _TooLarge(
            f"line {node.start_mark.line + 1}: its aliases expand to more than {MAX_NODES:,}"
            " values (anchors nested in anchors: an alias bomb?); kube refuses it"
        )
    sizes[id(node)] = size
    return size


def _pairs(pairs: list[tuple[yaml.Node, yaml.Node]]) -> list[yaml.Node]:
    return [node for pair in pairs for node in pair]


def dotenv(path: Path) -> dict[str, str]:
    """The variables of a `.env` file, or none if there is none."""
    if not path.is_file():
        return {}
    return env_file(path)


def env_file(path: Path) -> dict[str, str]:
    """The variables of an env file (`KEY=VALUE` lines)."""
    try:
        return read_env_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StackFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    except InterpolationError as exc:
        raise StackFileError(f"{path}: {exc}") from None


def _interpolate(interpolator: Interpolator, value: Any, path: Path, at: tuple[object, ...]) -> Any:
    """Every string value interpolated (keys are not, as in Compose)."""
    if isinstance(value, str):
        try:
            return interpolator.text(value)
        except InterpolationError as exc:
            raise StackFileError(f"{path}: {where(*at)}: {exc}") from None
    if isinstance(value, dict):
        return {k: _interpolate(interpolator, v, path, (*at, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(interpolator, v, path, (*at, i)) for i, v in enumerate(value)]
    return value


@cache
def _validator() -> jsonschema.Draft7Validator:
    text = resources.files("kube.stack").joinpath("schemas", SCHEMA).read_text(encoding="utf-8")
    return jsonschema.Draft7Validator(json.loads(text))


def check_schema(document: StackFile) -> None:
    """Refuse what the Compose specification does not allow, naming the deepest key path."""
    errors = sorted(_validator().iter_errors(document.data), key=jsonschema.exceptions.relevance)
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        assert best is not None
        extra = None
        if best.validator == "additionalProperties" and isinstance(best.instance, dict):
            extra = _unexpected(best.instance, best.schema)
        if extra is not None:
            raise document.error(
                "not a key of the Compose specification", *best.absolute_path, extra
            )
        raise document.error(best.message, *best.absolute_path)


def _unexpected(instance: dict[str, Any], schema: Any) -> str | None:
    """The first key of `instance` that `schema` neither names nor matches by pattern."""
    named = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return next(
        (
            str(key)
            for key in instance
            if key not in named and not any(re.search(p, str(key)) for p in patterns)
        ),
        None,
    )
