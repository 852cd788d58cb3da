"""Reading a stack file (kube/stack/loader.py, kube/stack/interpolate.py): YAML, variables
as Compose interpolates them, the Compose JSON Schema; each error names the file and the
key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube import cli
from kube.stack import loader
from kube.stack.interpolate import InterpolationError, Interpolator, read_env_file
from kube.stack.loader import StackFileError

VALUES = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$SET and ${SET}", "value and value"),
        ("cost $$5", "cost $5"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a ${UNSET2:-b} c}", "a b c"),
        ("${SET:?needed}", "value"),
    ],
)
def test_interpolation_as_compose_does_it(text: str, expected: str) -> None:
    assert Interpolator(VALUES).text(text) == expected


def test_an_unset_variable_is_empty_and_noted() -> None:
    interpolator = Interpolator(VALUES)
    assert interpolator.text("a${UNSET}b$UNSET") == "ab"
    assert interpolator.unset == ["UNSET"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("${UNSET:?give UNSET}", "UNSET is unset or empty: give UNSET"),
        ("${EMPTY:?}", "EMPTY is unset or empty: required"),
        ("${UNSET", "without its '}'"),
        ("${1X}", "not a variable name"),
        ("${SET/x}", "unknown operator"),
        ("5$", "write '$$' for a '$'"),
    ],
)
def test_a_bad_or_missing_variable_is_an_error(text: str, problem: str) -> None:
    with pytest.raises(InterpolationError, match=problem.replace("$", r"\$")):
        Interpolator(VALUES).text(text)


def test_an_env_file() -> None:
    text = "# c\n\nA=1\nexport B = two words \nC=\"x\\ny\"\nD='$raw'\nE=v # note\nALONE\n"
    assert read_env_file(text) == {"A": "1", "B": "two words", "C": "x\ny", "D": "$raw", "E": "v"}
    with pytest.raises(InterpolationError, match="line 1: '1A'"):
        read_env_file("1A=x")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    return path


def test_the_environment_wins_over_dotenv_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IMAGE=from-dotenv\nTAG=1\n")
    path = write(tmp_path, "services:\n  a: {image: '${IMAGE}:${TAG}', command: '$${X}'}\n")
    document = loader.read(path, {"IMAGE": "from-env"})
    assert document.data["services"]["a"] == {"image": "from-env:1", "command": "${X}"}


def test_unset_variables_are_reported(tmp_path: Path) -> None:
    document = loader.read(write(tmp_path, "services:\n  a: {image: 'i${NOPE}'}\n"), {})
    assert document.unset == ("NOPE",) and document.data["services"]["a"]["image"] == "i"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("services:\n  a: {image: i}\n  a: {image: j}\n", "not YAML: key 'a' given twice"),
        ("services: [\n", "not YAML"),
        ("- a\n", "a stack file is a mapping with `services`"),
        (
            "services:\n  a: {image: '${X:?set X}'}\n",
            "services.a.image: X is unset or empty: set X",
        ),
        (
            "services:\n  a: {image: i, deploy: {replikas: 2}}\n",
            "services.a.deploy.replikas: not a key of the Compose specification",
        ),
        (
            "services:\n  a: {image: i, ports: {x: 1}}\n",
            "services.a.ports: {'x': 1} is not of type",
        ),
        ("sevrices: {}\n", "stack.yaml: sevrices: not a key of the Compose specification"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key_path(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(StackFileError) as caught:
        loader.read(path, {})
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match="nothere.yaml: No such file"):
        loader.read(tmp_path / "nothere.yaml", {})


def test_the_vendored_schema_carries_its_licence() -> None:
    folder = Path(loader.__file__).parent / "schemas"
    assert "Apache License" in (folder / "COMPOSE-SPEC-LICENSE").read_text()
    assert (folder / loader.SCHEMA).is_file()


@pytest.mark.parametrize("verb", ["deploy", "diff"])
def test_the_cli_says_a_bad_file_in_one_line_before_asking_the_broker(
    tmp_path: Path, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "services:\n  a: {image: i, cap_add: [NET_ADMIN]}\n")
    nowhere = "amqp://guest:guest@127.0.0.1:1/%2F"  # no broker: it is never asked
    assert cli.main(["--amqp-url", nowhere, verb, "-f", str(path), "--name", "s"]) == cli.USAGE
    err = capsys.readouterr().err
    problem = "not supported by kube (docs/stacks.md lists what is)"
    assert err == f"kube: {path}: services.a.cap_add: {problem}\n"


MERGED = """\
x-common: &common
  image: busybox
  environment: {A: "1"}
x-more: &more
  labels: {team: web}
services:
  web:
    <<: *common
    command: sleep 1
  api:
    <<: [*common, *more]
    image: other
"""


def test_merge_keys_take_a_fragment_under_the_keys_written_beside_them(tmp_path: Path) -> None:
    data = loader.read(write(tmp_path, MERGED), {}).data
    assert data["services"] == {
        "web": {"image": "busybox", "environment": {"A": "1"}, "command": "sleep 1"},
        "api": {"image": "other", "environment": {"A": "1"}, "labels": {"team": "web"}},
    }


def test_a_key_written_twice_beside_a_merge_key_is_still_refused(tmp_path: Path) -> None:
    text = "x-c: &c {image: i}\nservices:\n  a:\n    <<: *c\n    image: j\n    image: k\n"
    with pytest.raises(StackFileError, match="key 'image' given twice"):
        loader.read(write(tmp_path, text), {})


def alias_bomb(levels: int = 9) -> str:
    """Nine anchors, each nine aliases of the one before: 9**9 values once expanded."""
    lines = ['x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        aliases = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"x-a{level}: &a{level} [{aliases}]")
    lines.append(f"x-all: *a{levels - 1}\nservices: {{web: {{image: i}}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("verb", ["deploy", "diff"])
def test_an_alias_bomb_is_refused_at_once(
    tmp_path: Path, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a file of about 600 bytes whose aliases expand to 9**9 values
    text = alias_bomb()
    assert len(text) < 700
    path = write(tmp_path, text)
    nowhere = "amqp://guest:guest@127.0.0.1:1/%2F"  # no broker: it is never asked
    # then kube refuses it, saying why, before walking it
    assert cli.main(["--amqp-url", nowhere, verb, "-f", str(path), "--name", "s"]) == cli.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"kube: {path}: line ") and err.count("\n") == 1
    assert f"aliases expand to more than {loader.MAX_NODES:,} values" in err


def test_aliases_within_the_bound_are_expanded(tmp_path: Path) -> None:
    data = loader.read(write(tmp_path, alias_bomb(levels=4)), {}).data  # 9**4 values
    assert len(data["x-all"]) == 9 and data["x-all"][8][8][8] == ["lol"] * 9


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x-a: &a [1, *a]\nservices: {}\n", "line 1: an alias refers to its own anchor"),
        ("services: {a: " + "[" * 5000 + "]" * 5000 + "}\n", "nested too deeply"),
    ],
)
def test_a_self_referring_or_too_deep_document_is_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(StackFileError, match=problem):
        loader.read(write(tmp_path, text), {})
