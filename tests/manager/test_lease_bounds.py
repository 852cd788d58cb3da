"""--lease is bounded, and the lease keeper never dies silently (manager/leadership.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from kube.cli import USAGE, lease_times, main
from manager.leadership import Identity, Keeper, Lease, LeaseTimes


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """kube's main() sets the root logger's handler to this test's captured stderr: put
    back the one before, or later tests log to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("given", ["99999999999999999999", "1e9", "0.01", "1", "301"])
def test_a_lease_out_of_bounds_is_refused_in_one_line(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manager", "--lease", given, "--store", "sqlite:////nonexistent/x.db"]) == USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "between 3 and 300 seconds" in err


def test_a_lease_within_bounds_is_renewed_every_fifth_of_it() -> None:
    times = lease_times(3)
    assert (times.length, times.renew_every) == (3, 0.6)
    assert lease_times(300).renew_every == 60


class Broken:
    """Leases whose renewal fails in a way nobody expected."""

    def renew(self, name: str, epoch: int, length: float) -> bool:
        raise OverflowError("int too large to convert")


def test_an_unexpected_error_in_the_keeper_makes_the_manager_stop_acting() -> None:
    lost = threading.Event()
    lease = Lease(3, 5.0, 0.0)
    keeper = Keeper(
        Broken(),  # type: ignore[arg-type]
        Identity("m", "h", 1),
        lease,
        LeaseTimes(length=5.0, renew_every=0.01, standby_every=0.01),
        lambda: 0.0,
        lost.set,
        lambda: 0.0,
    )
    keeper.start()
    assert lost.wait(5), "the keeper died without giving up the lease"
    keeper.join(5)
    assert "OverflowError" in (lease.lost or "")
    assert not lease.valid(0.0)


def test_a_store_that_cannot_be_reached_at_start_exits_5(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["manager", "--store", "postgresql://postgres@127.0.0.1:1/nowhere", "--metrics-port", "0"]
    )
    err = capsys.readouterr().err
    assert code == 5, err
    (line,) = [x for x in err.splitlines() if x.startswith("kube: ")]
    assert "127.0.0.1" in line or "nowhere" in line, line
