"""The Compose file mapped to TaskSpecs (kube/stack/compose.py), with no cluster: every
supported key, every refused one, the seam for the fields other work adds, errors that
name the file, the service and the key path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from kube.stack import compose, loader
from kube.stack.compose import Context, Dependency, Stack
from kube.stack.loader import StackFile, StackFileError
from shared.specs import RestartMode
from tests.support.docblocks import block

BUSYBOX = "localhost/kube-busybox:latest"


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Stack:
    path = tmp_path / "stack.yaml"
    path.write_text(textwrap.dedent(text))
    document = loader.read(path, environ or {})
    return compose.stack(document, "s", environ or {}, loader.env_file)


def one(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Any:
    """The spec of service `a` whose keys (besides image) are `body`."""
    text = "services:\n  a:\n    image: img\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return load(tmp_path, text, environ).service("a").spec


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(StackFileError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_minimal_service_is_one_replica_named_and_labelled_for_its_stack(
    tmp_path: Path,
) -> None:
    spec = load(tmp_path, "services:\n  web:\n    image: img\n").service("web").spec
    assert (spec.name, spec.image, spec.replicas) == ("s_web", "img", 1)
    assert spec.labels == {"kube.stack": "s"}
    assert "restart" not in spec.model_fields_set  # a service's default: restart always


def test_command_as_a_string_is_split_as_a_shell_would(tmp_path: Path) -> None:
    assert one(tmp_path, "command: sh -c 'echo a b'\n").command == ("sh", "-c", "echo a b")
    assert one(tmp_path, "command: [echo, '1']\n").command == ("echo", "1")


def test_pull_policy_and_labels(tmp_path: Path) -> None:
    spec = one(tmp_path, "pull_policy: never\nlabels: [tier=web, plain]\n")
    assert spec.pull_policy.value == "never"
    assert spec.labels == {"tier": "web", "plain": "", "kube.stack": "s"}
    assert one(tmp_path, "pull_policy: missing\n").pull_policy.value == "if-not-present"


def test_environment_over_env_files_and_bare_names_from_where_kube_runs(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text(
        "# comment\nA=from-file\nB='quoted # kept'\nexport C=c # note\n"
    )
    spec = one(
        tmp_path,
        """\
        env_file: [a.env, {path: missing.env, required: false}]
        environment:
          A: over
          FROM_SHELL:
          UNSET:
          N: 3
          FLAG: true
        """,
        {"FROM_SHELL": "shell"},
    )
    assert spec.env == {
        "A": "over",
        "B": "quoted # kept",
        "C": "c",
        "FROM_SHELL": "shell",
        "N": "3",
        "FLAG": "true",
    }
    assert one(tmp_path, "environment: [X=1, Y]\n", {"Y": "y"}).env == {"X": "1", "Y": "y"}


def test_a_missing_env_file_names_it(tmp_path: Path) -> None:
    message = refused(tmp_path, "services:\n  a:\n    image: i\n    env_file: nope.env\n")
    assert "services.a.env_file[0]" in message and "nope.env: no such file" in message


def test_ports_short_and_long(tmp_path: Path) -> None:
    spec = one(
        tmp_path,
        """\
        ports:
          - 80
          - "8443:443"
          - "9000:90/tcp"
          - {target: 53, published: "5353", protocol: tcp, mode: host}
        """,
    )
    assert [p if isinstance(p, int) else (p.host, p.container) for p in spec.ports] == [
        80,
        (8443, 443),
        (9000, 90),
        (5353, 53),
    ]


def test_healthcheck_forms_and_docker_defaults(tmp_path: Path) -> None:
    check = one(tmp_path, "healthcheck: {test: [CMD, test, -f, /ok]}\n").health_check
    assert check.exec == ("test", "-f", "/ok")
    assert (check.interval_seconds, check.timeout_seconds, check.failures) == (30.0, 30.0, 3)
    check = one(
        tmp_path,
        """\
        healthcheck:
          test: [CMD-SHELL, "wget -q localhost || exit 1"]
          interval: 1m30s
          timeout: 500ms
          retries: 5
          start_period: 2s
        """,
    ).health_check
    assert check.exec == ("/bin/sh", "-c", "wget -q localhost || exit 1")
    assert (check.interval_seconds, check.timeout_seconds) == (90.0, 0.5)
    assert (check.failures, check.grace_seconds) == (5, 2.0)
    assert one(tmp_path, "healthcheck: {test: true-ish cmd}\n").health_check.exec[:2] == (
        "/bin/sh",
        "-c",
    )
    assert one(tmp_path, "healthcheck: {disable: true}\n").health_check is None
    assert one(tmp_path, "healthcheck: {test: [NONE]}\n").health_check is None


def test_deploy_keys(tmp_path: Path) -> None:
    spec = one(
        tmp_path,
        """\
        deploy:
          mode: replicated
          replicas: "3"
          resources:
            limits: {cpus: "0.5", memory: 64M}
            reservations: {memory: 64m}
          placement:
            constraints: [node.labels.zone==a, "node.labels.disk != hdd"]
            preferences: [{spread: node.labels.zone}]
          update_config: {parallelism: 1, failure_action: pause}
          restart_policy: {condition: on-failure, delay: 5s, max_attempts: 4}
        """,
    )
    assert (spec.replicas, spec.cpu, spec.memory) == (3, 0.5, 64 * 2**20)
    assert [str(rule) for rule in spec.rules()] == ["zone == a", "disk != hdd"]
    assert spec.spread == "zone"
    assert spec.restart.policy == RestartMode.ON_FAILURE
    assert (spec.restart.max_restarts, spec.restart.backoff_seconds) == (4, 5.0)
    # Swarm's max_attempts 0 (or none given) is no limit
    spec = one(tmp_path, "deploy: {restart_policy: {condition: none}}\n")
    assert (spec.restart.policy, spec.restart.max_restarts) == (RestartMode.NEVER, None)


def test_depends_on_in_both_forms_orders_the_services(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """\
        services:
          web:
            image: i
            depends_on: {db: {condition: service_healthy}, cache: {condition: service_started}}
          cache: {image: i, depends_on: [db]}
          db: {image: i, healthcheck: {test: [CMD, "true"]}}
        """,
    )
    assert [s.key for s in stack.services] == ["db", "cache", "web"]
    assert stack.service("web").depends_on == (Dependency("db", True), Dependency("cache", False))


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("services:\n  a: {image: i, build: .}\n", "services.a.build", "not supported by kube"),
        ("services:\n  a: {image: i, restart: always}\n", "services.a.restart", "not supported"),
        ("services:\n  a: {image: i, networks: [n]}\n", "services.a.networks", "not supported"),
        ("services:\n  a: {image: i}\nnetworks: {n: {}}\n", "networks", "not supported by kube"),
        ("services:\n  a: {image: i, deploy: {mode: global}}\n", "deploy.mode", "replicated"),
        (
            "services:\n  a: {image: i, deploy: {labels: {a: b}}}\n",
            "services.a.deploy.labels",
            "not supported",
        ),
        (
            "services:\n  a: {image: i, deploy: {resources: {limits: {pids: 4}}}}\n",
            "services.a.deploy.resources.limits.pids",
            "not supported",
        ),
        (
            "services:\n  a:\n    image: i\n    deploy: {resources: {limits: {memory: 1g},"
            " reservations: {memory: 2g}}}\n",
            "services.a.deploy.resources.limits.memory",
            "one memory value",
        ),
        (
            "services:\n  a:\n    image: i\n"
            "    deploy: {placement: {constraints: [node.role==manager]}}\n",
            "services.a.deploy.placement.constraints[0]",
            "node labels only",
        ),
        (
            "services:\n  a: {image: i, deploy: {placement: {max_replicas_per_node: 1}}}\n",
            "services.a.deploy.placement.max_replicas_per_node",
            "not supported",
        ),
        (
            "services:\n  a: {image: i, deploy: {update_config: {parallelism: 2}}}\n",
            "services.a.deploy.update_config.parallelism",
            "one task at a time",
        ),
        (
            "services:\n  a: {image: i, deploy: {update_config: {order: start-first}}}\n",
            "services.a.deploy.update_config.order",
            "not supported",
        ),
        (
            "services:\n  a: {image: i, deploy: {restart_policy: {window: 10s}}}\n",
            "services.a.deploy.restart_policy.window",
            "not supported",
        ),
        ("services:\n  a: {image: i, ports: ['53:53/udp']}\n", "ports[0]", "TCP ports only"),
        ("services:\n  a: {image: i, ports: ['1.2.3.4:80:80']}\n", "ports[0]", "no host IP"),
        ("services:\n  a: {image: i, ports: ['8000-8001:80']}\n", "ports[0]", "no range"),
        (
            "services:\n  a: {image: i, ports: [{target: 80, mode: ingress}]}\n",
            "services.a.ports[0].mode",
            "no ingress mesh",
        ),
        (
            "services:\n  a: {image: i, ports: [{target: 80, host_ip: 0.0.0.0}]}\n",
            "services.a.ports[0].host_ip",
            "not supported",
        ),
        (
            "services:\n  a: {image: i, healthcheck: {test: [CMD, x], start_interval: 1s}}\n",
            "services.a.healthcheck.start_interval",
            "not supported",
        ),
        ("services:\n  a: {image: i, healthcheck: {interval: 1s}}\n", "healthcheck", "a test"),
        (
            "services:\n  a: {image: i, healthcheck: {test: [CMD, x], interval: soon}}\n",
            "services.a.healthcheck.interval",
            "not a duration",
        ),
        (
            "services:\n  a:\n    image: i\n"
            "    depends_on: {b: {condition: service_completed_successfully}}\n"
            "  b: {image: i}\n",
            "services.a.depends_on.b.condition",
            "service_started or service_healthy",
        ),
        (
            "services:\n  a: {image: i, depends_on: {b: {condition: service_healthy}}}\n"
            "  b: {image: i}\n",
            "services.a.depends_on.b",
            "b has no healthcheck",
        ),
        ("services:\n  a: {image: i, depends_on: [c]}\n", "depends_on.c", "no service 'c'"),
        (
            "services:\n  a: {image: i, depends_on: [b]}\n  b: {image: i, depends_on: [a]}\n",
            "depends_on",
            "a cycle: a -> b -> a",
        ),
        ("services:\n  a: {command: x}\n", "services.a.image", "needs an image"),
        ("services:\n  a: {image: i, labels: {kube.x: y}}\n", "labels.kube.x", "kube's own"),
        ("services:\n  a: {image: i, environment: {1BAD: x}}\n", "services.a", "env"),
        ("services: {}\n", "services", "no services"),
        (
            "services:\n  a: {image: i, x-kube: {schedule: '* * * * *'}, deploy: {replicas: 2}}\n",
            "services.a.deploy.replicas",
            "a job (x-kube.schedule) has no replicas",
        ),
        ("services:\n  a: {image: i, x-kube: {timezone: UTC}}\n", "x-kube", "needs a schedule"),
        (
            "services:\n  a: {image: i, x-kube: {schedule: '* * * * *', every: 3}}\n",
            "x-kube.every",
            "kube reads schedule",
        ),
        ("services:\n  a: {image: i, x-kube: {schedule: nope}}\n", "services.a", "valid kube"),
        (
            "services:\n  j: {image: i, x-kube: {schedule: '* * * * *'}}\n"
            "  a: {image: i, depends_on: [j]}\n",
            "services.a.depends_on.j",
            "j is a job: nothing waits for its runs",
        ),
    ],
)
def test_a_key_kube_does_not_take_is_refused_by_its_path(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    message = refused(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'stack.yaml'}: ")
    assert where in message and problem in message, message


def test_named_volumes_short_and_long_map_to_volumes_and_binds_to_mounts(tmp_path: Path) -> None:
    spec = (
        load(
            tmp_path,
            """\
        services:
          a:
            image: i
            volumes:
              - data:/var/lib/data
              - {type: volume, source: logs, target: /logs, read_only: true}
              - ./conf:/conf:ro
        volumes:
          data:
          logs: {}
        """,
        )
        .service("a")
        .spec
    )
    assert [(v.name, v.target, v.read_only) for v in spec.volumes] == [
        ("s_data", "/var/lib/data", False),
        ("s_logs", "/logs", True),
    ]
    assert [(m.source, m.target) for m in spec.mounts] == [
        (str(tmp_path.resolve() / "conf"), "/conf")
    ]


@pytest.mark.parametrize(
    "option",
    [
        "driver: local",
        "driver_opts: {type: nfs}",
        "external: true",
        "name: other",
        "labels: {a: b}",
    ],
)
def test_a_top_level_volume_option_kube_cannot_honour_is_refused_by_name(
    tmp_path: Path, option: str
) -> None:
    message = refused(tmp_path, f"services:\n  a: {{image: i}}\nvolumes:\n  data: {{{option}}}\n")
    key = option.split(":")[0]
    assert f"volumes.data.{key}: not supported by kube (a plain named volume only" in message


def test_a_volume_with_more_than_one_replica_is_refused_with_kubes_reason(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        "services:\n  a: {image: i, volumes: ['d:/d'], deploy: {replicas: 2}}\nvolumes: {d: {}}\n",
    )
    assert "services.a" in message
    assert "a service with volumes runs at most 1 replica (asked for 2)" in message


def test_secrets_and_configs_name_kubes_own(tmp_path: Path) -> None:
    spec = (
        load(
            tmp_path,
            """\
        services:
          a:
            image: i
            secrets: [pw, {source: pw, target: /etc/pw}]
            configs: [conf, {source: conf, target: /etc/app.conf}]
        secrets: {pw: {external: true}}
        configs: {conf: {external: true}}
        """,
        )
        .service("a")
        .spec
    )
    assert [(s.name, s.path()) for s in spec.secrets] == [
        ("pw", "/run/secrets/pw"),
        ("pw", "/etc/pw"),
    ]
    assert [(c.name, c.path()) for c in spec.configs] == [
        ("conf", "/conf"),
        ("conf", "/etc/app.conf"),
    ]
    message = refused(
        tmp_path,
        "services:\n  a: {image: i, configs: [{source: c, target: /c, mode: 0440}]}\n"
        "configs: {c: {external: true}}\n",
    )
    assert "services.a.configs[0].mode: not supported by kube" in message
    message = refused(tmp_path, "services:\n  a: {image: i}\nsecrets: {pw: {file: ./pw}}\n")
    assert (
        "secrets.pw: kube takes `external: true` secrets (create them with `kube secret" in message
    )


def test_entrypoint_replaces_the_images(tmp_path: Path) -> None:
    spec = one(tmp_path, "entrypoint: sh -c\ncommand: [echo hi]\n")
    assert (spec.entrypoint, spec.command) == (("sh", "-c"), ("echo hi",))
    assert one(tmp_path, "command: [x]\n").entrypoint is None
    assert "entrypoint" in refused(tmp_path, "services:\n  a: {image: i, entrypoint: []}\n")


def test_the_documented_job_block_maps_as_documented(tmp_path: Path) -> None:
    spec = load(tmp_path, block("docs/stacks.md", "x-kube-job")).service("report").spec
    assert (spec.name, spec.schedule, spec.timezone) == ("s_report", "0 3 * * *", "Europe/Paris")
    assert (spec.concurrency.value, spec.catch_up, spec.keep_runs) == ("forbid", 0, 5)


def test_x_kube_schedule_makes_a_job_without_replicas(tmp_path: Path) -> None:
    spec = one(
        tmp_path,
        "x-kube: {schedule: '0 3 * * *', timezone: Europe/Paris, concurrency: replace,"
        " catch_up: 1, keep_runs: 3}\n",
    )
    assert (spec.schedule, spec.timezone, spec.concurrency.value) == (
        "0 3 * * *",
        "Europe/Paris",
        "replace",
    )
    assert (spec.catch_up, spec.keep_runs, spec.replicas) == (1, 3, None)
    assert (
        load(tmp_path, "services:\n  a: {image: i, x-kube: {schedule: '* * * * *'}}\n")
        .service("a")
        .job
    )


def test_a_named_volume_must_be_declared(tmp_path: Path) -> None:
    message = refused(tmp_path, "services:\n  a: {image: i, volumes: ['data:/data']}\n")
    assert "services.a.volumes[0]" in message and "not declared" in message


def test_a_bind_mount_is_a_mount_relative_to_the_file(tmp_path: Path) -> None:
    spec = one(tmp_path, "volumes: ['./data:/data:ro', {type: bind, source: /srv, target: /s}]\n")
    assert [(m.source, m.target, m.read_only) for m in spec.mounts] == [
        (str(tmp_path.resolve() / "data"), "/data", True),
        ("/srv", "/s", False),
    ]


def context(tmp_path: Path, top: dict[str, Any]) -> Context:
    document = StackFile(tmp_path / "stack.yaml", {"services": {"a": {}}, **top})
    return Context(document, "a", {}, loader.env_file)


def test_each_reference_key_maps_to_its_field_shape(tmp_path: Path) -> None:
    declared = {"volumes": {"pg": None}, "secrets": {"pw": {}}, "configs": {"conf": {}}}
    ctx = context(tmp_path, declared)
    # then each key maps to the shape those fields take
    body = {
        "volumes": [
            "pg:/var/lib/pg",
            {"type": "volume", "source": "pg", "target": "/r", "read_only": True},
        ]
    }
    assert compose.volumes(body, ctx) == {
        "volumes": (
            {"name": "pg", "target": "/var/lib/pg", "read_only": False},
            {"name": "pg", "target": "/r", "read_only": True},
        )
    }
    body = {"secrets": ["pw", {"source": "pw", "target": "db-password"}]}
    assert compose.secrets(body, ctx) == {
        "secrets": ({"name": "pw"}, {"name": "pw", "target": "db-password"})
    }
    body = {"configs": ["conf", {"source": "conf", "target": "/etc/app.conf"}]}
    assert compose.configs(body, ctx) == {
        "configs": (
            {"name": "conf", "target": "/conf"},
            {"name": "conf", "target": "/etc/app.conf"},
        )
    }
    assert compose.entrypoint({"entrypoint": "/bin/sh -c"}, ctx) == {
        "entrypoint": ("/bin/sh", "-c")
    }


def test_a_secret_not_declared_at_the_top_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match=r"services\.a\.secrets\[0\]: 'pw' is not declared"):
        compose.secrets({"secrets": ["pw"]}, context(tmp_path, {}))


def test_a_top_level_secret_must_be_external(tmp_path: Path) -> None:
    document = StackFile(tmp_path / "s.yaml", {"secrets": {"pw": {"file": "./pw.txt"}}})
    with pytest.raises(StackFileError, match="secrets.pw: kube takes `external: true`"):
        compose.top(document)


def test_the_stack_name_comes_from_the_flag_or_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: fromfile\nservices:\n  a: {image: i}\n")
    document = loader.read(path, {})
    assert compose.stack(document, None, {}, loader.env_file).name == "fromfile"
    assert compose.stack(document, "flag", {}, loader.env_file).service("a").spec.name == "flag_a"
    path.write_text("services:\n  a: {image: i}\n")
    with pytest.raises(StackFileError, match="give the stack a name"):
        compose.stack(loader.read(path, {}), None, {}, loader.env_file)


def test_the_examples_map(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    for name in ("stack-web.yaml", "stack-healthy.yaml", "stack-job.yaml"):
        document = loader.read(examples / name, {})
        stack = compose.stack(document, None, {}, loader.env_file)
        assert all(s.spec.image == BUSYBOX for s in stack.services)
