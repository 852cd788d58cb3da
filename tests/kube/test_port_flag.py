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


@pytest.mark.parametrize(
    "flag", ["x", "8080:", ":80", "a:80", "1:2:3", "８０", "８０:80", "+80", " 80"]
)
def test_a_malformed_port_is_a_usage_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--name", "w", "--image", "b", "-p", flag])
    assert exited.value.code == cli.USAGE
    err = capsys.readouterr().err
    assert "is not CONTAINER_PORT or HOST_PORT:CONTAINER_PORT" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-p", "8080:80", "-p", "8080:81"], "each host port may be listed once (8080 twice)"),
    ],
)
def test_a_port_out_of_range_or_twice_is_refused_by_name(flags: list[str], says: str) -> None:
    with pytest.raises(DecodeError) as caught:
        make_spec({"name": "w", "image": "b", "ports": parsed_ports(*flags)})
    assert says in caught.value.reason


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("0", "'0': port 0 is not within 1 to 65535"),
        ("65536", "'65536': port 65536 is not within 1 to 65535"),
        ("0:80", "'0:80': port 0 is not within 1 to 65535"),
        ("8080:0", "'8080:0': port 0 is not within 1 to 65535"),
        ("-1:80", "'-1:80' is not CONTAINER_PORT or HOST_PORT:CONTAINER_PORT"),
        ("-1", "'-1' is not CONTAINER_PORT or HOST_PORT:CONTAINER_PORT"),
    ],
)
def test_a_port_out_of_range_is_a_usage_error_naming_the_flag(
    flag: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a port kube could never publish, or a negative one argparse would take for a flag
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--name", "w", "--image", "b", "-p", flag])

    # then the CLI refuses it itself, naming the flag and the port
    assert exited.value.code == cli.USAGE
    err = capsys.readouterr().err
    assert "argument -p/--port" in err and says in err and "expected one argument" not in err
