"""Input kube refuses is said in kube's own sentences: node labels by Kubernetes' rules,
validation errors without pydantic's wording, one bound on replicas for the CLI and the
manager."""

from __future__ import annotations

import pytest

from kube import cli
from kube.client import make_spec
from manager.quotas import Quotas
from shared.errors import DecodeError
from shared.wire import MAX_REPLICAS


def usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a usage error says (exit 2), the parser's or the command's."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == cli.USAGE, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("label", ["zone=eu 1", "zone=a,b", "zöne=x", "a b=c", "zone=é"])
def test_a_node_label_outside_kubernetes_rules_is_refused(
    label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # when a worker is given a label with a space, a comma or a non-ASCII character
    err = usage(["worker", "--name", "w", "--label", label], capsys)
    # then it is refused before anything starts, naming the label and the rule
    assert "is not a node label" in err and "as in Kubernetes" in err, err


def test_an_operators_label_is_held_to_the_same_rules(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage(["--amqp-url", vhost, "--timeout", "2", "label", "n", "zone=a,b"], capsys)
    assert "'a,b' (of zone) is not a node label value" in err, err
    assert "Value error" not in err, err


def test_validation_errors_are_said_in_kubes_words() -> None:
    # when a spec has a field of the wrong type, one missing and one unknown
    with pytest.raises(DecodeError) as refused:
        make_spec({"name": "x", "image": 5, "ports": [{"host": 80}], "bogus": 1})
    said = refused.value.reason
    # then no pydantic wording reaches the user
    for theirs in ("Input should be", "Value error", "Field required", "Extra inputs"):
        assert theirs not in said, said
    assert "image: must be a valid string" in said and "bogus: not a field" in said, said


def test_one_bound_on_replicas_said_alike_by_the_cli_and_the_manager(
    capsys: pytest.CaptureFixture[str],
) -> None:
    over = MAX_REPLICAS + 1
    # when a user scales over the bound, then the CLI refuses it (exit 2) before sending
    err = usage(["scale", "web", str(over)], capsys)
    # with the manager's own sentence for the same count
    manager_says = Quotas().replicas(over)
    assert manager_says is not None and manager_says in err, err
    assert manager_says in usage(["run", "--image", "b", "--replicas", str(over)], capsys)
    # and the bound is the manager's default, and its flag's most
    assert Quotas().replicas(MAX_REPLICAS) is None
    usage(["manager", "--max-replicas", str(over)], capsys)
