"""The worker's security policy: refusals by default, and what a file or flags allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.execs import ExecRefusal, refusal_sentence
from shared.specs import TaskSpec
from worker.mounts import changed_sources, resolve_allowed, resolve_mounts
from worker.policy import PolicyError, PolicyRefused, WorkerPolicy, registry_host

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


# -- mount sources, resolved on the worker ----------------------------------------------


def test_a_symlink_under_an_allowed_source_that_points_out_is_refused_by_its_target(
    tmp_path: Path,
) -> None:
    # given an allowed directory holding a link to the host's root
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link").symlink_to("/")
    policy = WorkerPolicy(mount_sources=(str(allowed),))
    task = TaskSpec(name="a", image="b", mounts=[{"source": f"{allowed}/link", "target": "/x"}])  # type: ignore[list-item]

    # when the spec is checked as written, it passes; resolved on the host, it is refused
    assert policy.violations(task) == []
    with pytest.raises(PolicyRefused) as caught:
        resolve_mounts(task, policy, "node-1")

    # then the reason names the path the link resolves to and the flag
    assert caught.value.violations == [
        f"bind mount of {allowed}/link resolves to /, which is under none of the allowed"
        f" mount sources ({allowed}; --allow-mount PATH)"
    ]
    assert "refused by the security policy of node-1" in str(caught.value)


def test_a_mount_is_given_its_resolved_source(tmp_path: Path) -> None:
    # given an allowed directory reached through a symlink, with a link inside it
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    (real / "current").symlink_to(real / "data")
    policy = WorkerPolicy(mount_sources=(str(real),))
    task = TaskSpec(
        name="a",
        image="b",
        mounts=[{"source": f"{tmp_path}/alias/current", "target": "/x", "read_only": True}],  # type: ignore[list-item]
    )

    # when it is resolved, then the engine gets the real path, the rest unchanged
    (mount,) = resolve_mounts(task, policy, "n").mounts
    assert (mount.source, mount.target, mount.read_only) == (str(real / "data"), "/x", True)


@pytest.mark.parametrize("name", ["missing", "loop"])
def test_a_source_that_does_not_resolve_is_refused(tmp_path: Path, name: str) -> None:
    # given an allowed directory with a dangling path and a symlink loop
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    policy = WorkerPolicy(mount_sources=(str(tmp_path),))
    task = TaskSpec(name="a", image="b", mounts=[{"source": f"{tmp_path}/{name}", "target": "/x"}])  # type: ignore[list-item]

    # when it is resolved, then it is refused, saying it cannot be resolved
    with pytest.raises(PolicyRefused, match=f"bind mount of {tmp_path}/{name} cannot be resolved"):
        resolve_mounts(task, policy, "n")


# -- registries on local addresses --------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("busybox", None),
        ("library/busybox:1", None),
        ("team/app", None),
        ("docker.io/library/busybox", "docker.io"),
        ("registry.example.com:5000/a/b:1", "registry.example.com"),
        ("localhost/kube-busybox", "localhost"),  # Docker reads `localhost` as a registry
        ("localhost:5000/x", "localhost"),
        ("127.0.0.1:5000/x", "127.0.0.1"),
        ("[::1]:5000/x", "::1"),
        ("[fe80::1]/x@sha256:" + "0" * 64, "fe80::1"),
    ],
)
def test_the_registry_host_is_read_as_docker_reads_it(image: str, host: str | None) -> None:
    assert registry_host(image) == host


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("127.0.0.1:5000/x", "loopback"),
        ("127.9.9.9/x", "loopback"),
        ("127.1:80/x", "loopback"),  # the short form the engine's resolver also reads
        ("0x7f.0.0.1/x", "loopback"),
        ("localhost:5000/x", "loopback"),
        ("registry.localhost/x", "loopback"),
        ("[::1]:5000/x", "loopback"),
        ("[::ffff:127.0.0.1]:5000/x", "loopback"),
        ("169.254.169.254/x", "link-local"),
        ("[fe80::1]:5000/x", "link-local"),
        ("0.0.0.0:5000/x", "unspecified"),
        ("[::]:5000/x", "unspecified"),
    ],
)
def test_the_default_policy_refuses_pulls_from_local_registries(image: str, kind: str) -> None:
    # given the default policy, when a pull of an image on a local registry is checked
    reason = WorkerPolicy().pull_violation(image)

    # then it is refused, naming the registry, the kind of address and how to allow it
    assert reason is not None
    assert f"pulling image {image} would connect to registry" in reason
    assert f"{kind} address" in reason
    assert "--allow-local-registry" in reason and "allow_local_registries" in reason


@pytest.mark.parametrize(
    "image", ["busybox", "docker.io/library/busybox", "10.0.0.5:5000/x", "registry.example.com/x"]
)
def test_pulls_from_other_registries_pass(image: str) -> None:
    assert WorkerPolicy().pull_violation(image) is None


def test_local_registries_are_allowed_by_the_flag_or_the_file_and_patterns_still_narrow(
    tmp_path: Path,
) -> None:
    # given a policy file that allows local registries and lists one image pattern
    path = tmp_path / "policy.toml"
    path.write_text('allow_local_registries = true\nimages = ["127.0.0.1:5000/team/*"]\n')
    policy = WorkerPolicy.load(path)

    # when pulls are checked, then they pass (and so with the flag alone)
    assert policy.pull_violation("127.0.0.1:5000/team/app") is None
    assert WorkerPolicy(allow_local_registries=True).pull_violation("[::1]/x") is None
    assert WorkerPolicy().merge(policy).allow_local_registries

    # and the image patterns still refuse what they do not list
    assert policy.violations(TaskSpec(name="a", image="127.0.0.1:5000/other/app")) == [
        "image 127.0.0.1:5000/other/app matches none of 127.0.0.1:5000/team/*"
    ]


def test_a_checked_source_that_became_a_link_is_reported_before_the_start(tmp_path: Path) -> None:
    # given two resolved sources under an allowed directory, one then swapped for a link
    (tmp_path / "kept").mkdir()
    (tmp_path / "swapped").symlink_to("/")
    policy = WorkerPolicy(mount_sources=(str(tmp_path),))

    # when they are checked again, then only the swapped one is wrong, saying what it is now
    found = changed_sources([f"{tmp_path}/kept", f"{tmp_path}/swapped"], policy, "n")
    assert found == [
        f"bind mount source {tmp_path}/swapped changed since it was checked: it resolves to /"
    ]


def test_an_allowed_source_reached_through_a_link_is_compared_resolved(tmp_path: Path) -> None:
    # given an allowed directory named through a link (as /var/run is /run)
    (tmp_path / "real" / "data").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    policy = resolve_allowed(WorkerPolicy(mount_sources=(f"{tmp_path}/alias",)))

    # when a mount under it is resolved, then it passes, as the real path
    task = TaskSpec(
        name="a", image="b", mounts=[{"source": f"{tmp_path}/alias/data", "target": "/x"}]
    )  # type: ignore[list-item]
    assert policy.mount_sources == (f"{tmp_path}/real",)
    assert [m.source for m in resolve_mounts(task, policy, "n").mounts] == [f"{tmp_path}/real/data"]


def test_exec_is_refused_by_default_and_allowed_by_the_flag_or_the_file(tmp_path: Path) -> None:
    assert WorkerPolicy().exec_refusal() is ExecRefusal.NODE_DISALLOWS
    sentence = refusal_sentence(ExecRefusal.NODE_DISALLOWS, task="web-1", node="node-1")
    assert "--allow-exec" in sentence and "allow_exec" in sentence and "node-1" in sentence
    assert WorkerPolicy(allow_exec=True).exec_refusal() is None
    path = tmp_path / "policy.toml"
    path.write_text("allow_exec = true\n")
    assert WorkerPolicy.load(path).exec_refusal() is None
    assert WorkerPolicy().merge(WorkerPolicy.load(path)).allow_exec
    path.write_text('allow_exec = "yes"\n')
    with pytest.raises(PolicyError, match="allow_exec must be true or false"):
        WorkerPolicy.load(path)
