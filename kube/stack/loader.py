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


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (Compose refuses it; the
    plain loader keeps the last silently)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
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
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: a stack file is a mapping with `services`")
    values = {**dotenv(path.parent / ".env"), **environ}
    interpolator = Interpolator(values)
    document = StackFile(path, _interpolate(interpolator, data, path, ()))
    check_schema(document)
    return StackFile(path, document.data, tuple(interpolator.unset))


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
