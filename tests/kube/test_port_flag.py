"""`kube run -p`: a container port, or HOST:CONTAINER for a fixed host port."""

from __future__ import annotations

import pytest

from kube import cli
from kube.client import make_spec
from shared.errors import DecodeError
from shared.specs import PortMapping


def parsed_ports(*flags: str) -> object:
    args = cli.build_parser().parse_args(["run", "--name", "w", "--image", "b", *flags])
    return args.ports


def test_p_takes_a_port_or_host_colon_container() -> None:
    # given both forms, short and long
    ports = parsed_ports("-p", "80", "--port", "8080:81")

    # then they become the spec's two forms
    assert ports == [80, {"container": 81, "host": 8080}]
    spec = make_spec({"name": "w", "image": "b", "ports": ports})
    assert spec.published() == (PortMapping(container=80), PortMapping(container=81, host=8080))


@pytest.mark.parametrize("flag", ["x", "8080:", ":80", "a:80", "1:2:3"])
def test_a_malformed_port_is_a_usage_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--name", "w", "--image", "b", "-p", flag])
    assert exited.value.code == cli.USAGE
    err = capsys.readouterr().err
    assert "is not CONTAINER_PORT or HOST_PORT:CONTAINER_PORT" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-p", "70000:80"], "ports.0.mapping.host"),
        (["-p", "8080:80", "-p", "8080:81"], "each host port may be listed once (8080 twice)"),
    ],
)
def test_a_port_out_of_range_or_twice_is_refused_by_name(flags: list[str], says: str) -> None:
    with pytest.raises(DecodeError) as caught:
        make_spec({"name": "w", "image": "b", "ports": parsed_ports(*flags)})
    assert says in caught.value.reason
