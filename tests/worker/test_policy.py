"""The worker's security policy: refusals by default, and what a file or flags allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.specs import TaskSpec
from worker.policy import PolicyError, WorkerPolicy

RISKY = TaskSpec(
    name="r",
    image="docker.io/library/busybox",
    privileged=True,
    network_mode="host",  # type: ignore[arg-type]
    pid_mode="host",
    mounts=[{"source": "/srv/data/x", "target": "/x"}],  # type: ignore[list-item]
    cap_add=("NET_ADMIN",),
    devices=("/dev/fuse",),
)


def test_a_plain_spec_passes_the_default_policy() -> None:
    assert WorkerPolicy().violations(TaskSpec(name="a", image="b")) == []


def test_the_default_policy_refuses_each_risky_option_and_says_how_to_allow_it() -> None:
    found = WorkerPolicy().violations(RISKY)
    assert len(found) == 6
    assert found[0] == "privileged mode is not allowed (worker flag --allow-privileged)"
    assert any("--allow-mount" in f for f in found) and any(
        "--allow-cap NET_ADMIN" in f for f in found
    )


def test_a_policy_file_allows_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "allow_privileged = true\nallow_host_network = true\nallow_host_pid = true\n"
        'mount_sources = ["/srv/data"]\ncapabilities = ["NET_ADMIN"]\ndevices = ["/dev/fuse"]\n'
        'images = ["docker.io/library/*"]\n'
    )
    assert WorkerPolicy.load(path).violations(RISKY) == []


def test_mounts_must_be_under_an_allowed_prefix_without_dot_dot() -> None:
    policy = WorkerPolicy(mount_sources=("/srv/data",))
    sneaky = TaskSpec(
        name="a", image="b", mounts=[{"source": "/srv/data/../../etc", "target": "/x"}]
    )  # type: ignore[list-item]
    near = TaskSpec(name="a", image="b", mounts=[{"source": "/srv/database", "target": "/x"}])  # type: ignore[list-item]
    assert policy.violations(sneaky) and policy.violations(near)


def test_the_image_allow_list_uses_shell_patterns() -> None:
    policy = WorkerPolicy(images=("localhost/*",))
    assert policy.violations(TaskSpec(name="a", image="localhost/app:1")) == []
    assert policy.violations(TaskSpec(name="a", image="evil.example/app")) == [
        "image evil.example/app matches none of localhost/*"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow_everything = true", "unknown keys allow_everything"),
        ('allow_privileged = "yes"', "must be true or false"),
        ("images = [1]", "must be a list of strings"),
        ("not toml [", "cannot read"),
    ],
)
def test_a_bad_policy_file_is_an_error_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        WorkerPolicy.load(path)
