"""What a deploy would change (kube/stack/plan.py), from a stack and the cluster's services,
with no cluster: create, update field by field, scale, nothing, prune or report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kube.stack import compose, loader, plan
from kube.stack.plan import Action, StackConflict
from shared.files import FileKind
from shared.models import JobRecord, ServiceRecord, TaskSpec

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FILE = """\
services:
  db: {image: img, environment: {MODE: a}, healthcheck: {test: [CMD, "true"]}}
  web: {image: img, depends_on: {db: {condition: service_healthy}}, deploy: {replicas: 2}}
"""


def stack(tmp_path: Path, text: str = FILE) -> compose.Stack:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    return compose.stack(loader.read(path, {}), "st", {}, loader.env_file)


def deployed(spec: TaskSpec, **changes: object) -> ServiceRecord:
    """The service the manager keeps after a submit of `spec` (as manager/services.py)."""
    record = ServiceRecord(
        name=spec.name, spec=spec, replicas=spec.replicas or 0, created_at=NOW, updated_at=NOW
    )
    return record.model_copy(update=changes)


def cluster(tmp_path: Path, text: str = FILE) -> list[ServiceRecord]:
    # through JSON, as `kube services` reads them
    return [
        ServiceRecord.model_validate_json(deployed(s.spec).model_dump_json())
        for s in stack(tmp_path, text).services
    ]


def test_nothing_deployed_creates_every_service_in_dependency_order(tmp_path: Path) -> None:
    changes = plan.plan(stack(tmp_path), [], prune=False)
    assert [(c.name, c.action) for c in changes] == [
        ("st_db", Action.CREATE),
        ("st_web", Action.CREATE),
    ]
    assert plan.render(changes).splitlines()[1].split() == ["st_db", "create"]


def test_the_same_file_again_changes_nothing(tmp_path: Path) -> None:
    changes = plan.plan(stack(tmp_path), cluster(tmp_path), prune=True)
    assert {c.action for c in changes} == {Action.UNCHANGED}
    assert not plan.changed(changes) and plan.render(changes) == "no changes"


def test_a_changed_field_is_an_update_naming_it(tmp_path: Path) -> None:
    changed = FILE.replace("MODE: a", "MODE: b, EXTRA: x").replace("img, environ", "img2, environ")
    changes = plan.plan(stack(tmp_path, changed), cluster(tmp_path), prune=False)
    db = changes[0]
    assert db.action == Action.UPDATE
    assert [(f.field, f.before, f.after) for f in db.fields] == [
        ("env.EXTRA", None, "x"),
        ("env.MODE", "a", "b"),
        ("image", "img", "img2"),
    ]
    assert changes[1].action == Action.UNCHANGED
    table = plan.render(changes)
    assert "env.MODE   a       b" in table
    assert json.loads(json.dumps([c.as_json() for c in changes]))[0]["fields"][0] == {
        "field": "env.EXTRA",
        "before": None,
        "after": "x",
    }


def test_replicas_alone_is_a_scale_and_a_kube_scale_counts(tmp_path: Path) -> None:
    services = cluster(tmp_path)
    scaled = [s.model_copy(update={"replicas": 5}) if s.name == "st_web" else s for s in services]
    changes = plan.plan(stack(tmp_path), scaled, prune=False)
    assert (changes[1].action, changes[1].fields[0].before, changes[1].fields[0].after) == (
        Action.SCALE,
        5,
        2,
    )


def test_a_stopped_service_is_created_again(tmp_path: Path) -> None:
    services = [s.model_copy(update={"desired_state": "stopped"}) for s in cluster(tmp_path)]
    assert plan.plan(stack(tmp_path), services, prune=False)[0].action == Action.CREATE


def test_a_service_the_file_lost_is_reported_or_pruned(tmp_path: Path) -> None:
    extra = FILE + "  old: {image: img}\n"
    services = cluster(tmp_path, extra)
    kept = plan.plan(stack(tmp_path), services, prune=False)[-1]
    assert (kept.name, kept.action) == ("st_old", Action.NOT_IN_FILE)
    assert "not in file (kept; --prune removes it)" in plan.render([kept])
    assert plan.plan(stack(tmp_path), services, prune=True)[-1].action == Action.REMOVE


@pytest.mark.parametrize(("labels", "owner"), [({}, ""), ({"kube.stack": "other"}, "other")])
def test_a_service_of_another_owner_is_refused(
    tmp_path: Path, labels: dict[str, str], owner: str
) -> None:
    spec = TaskSpec(name="st_db", image="img", replicas=1, labels=labels)
    with pytest.raises(StackConflict, match="service st_db exists and is not of stack st") as e:
        plan.plan(stack(tmp_path), [deployed(spec)], prune=False)
    assert (f"it is of stack {owner}" in str(e.value)) == bool(owner)


def test_only_the_stack_label_of_the_kube_prefix_is_a_specs() -> None:
    TaskSpec(name="a", image="i", labels={"kube.stack": "s"})
    with pytest.raises(ValueError, match="reserved: kube.task-id"):
        TaskSpec(name="a", image="i", labels={"kube.task-id": "x"})


def test_the_version_the_manager_gives_a_secret_is_no_change(tmp_path: Path) -> None:
    # given a service whose secret the manager rolled onto version 3
    text = "services:\n  a: {image: img, secrets: [pw]}\nsecrets: {pw: {external: true}}\n"
    [service] = cluster(tmp_path, text)
    rolled = service.spec.model_copy(
        update={"secrets": (service.spec.secrets[0].model_copy(update={"version": 3}),)}
    )
    # then the same file is no change
    changes = plan.plan(stack(tmp_path, text), [deployed(rolled)], prune=False)
    assert [c.action for c in changes] == [Action.UNCHANGED]


def test_the_secrets_and_configs_the_manager_lacks_are_named_with_their_key_paths(
    tmp_path: Path,
) -> None:
    text = (
        "services:\n  a: {image: img, secrets: [pw, gone], configs: [{source: c, target: /c}]}\n"
        "  b: {image: img, x-kube: {schedule: '0 3 * * *'}, configs: [{source: d, target: /d}]}\n"
        "secrets: {pw: {external: true}, gone: {external: true}}\n"
        "configs: {c: {external: true}, d: {external: true}}\n"
    )
    parsed = stack(tmp_path, text)
    assert plan.used_kinds(parsed) == [FileKind.SECRET, FileKind.CONFIG]
    known = {FileKind.SECRET: {"pw"}, FileKind.CONFIG: {"c"}}
    assert plan.missing_files(parsed, known) == [
        "services.a.secrets[1]: no such secret: gone",
        "services.b.configs[0]: no such config: d",
    ]
    everything = {FileKind.SECRET: {"pw", "gone"}, FileKind.CONFIG: {"c", "d"}}
    assert plan.missing_files(parsed, everything) == []
    assert plan.used_kinds(stack(tmp_path)) == []


JOBS = FILE + "  nightly: {image: img, x-kube: {schedule: '0 3 * * *'}}\n"


def job_of(spec: TaskSpec) -> JobRecord:
    """The job the manager keeps after a submit of `spec` (manager/jobs.py), through JSON."""
    record = JobRecord(name=spec.name, spec=spec, created_at=NOW, updated_at=NOW)
    return JobRecord.model_validate_json(record.model_dump_json())


def test_a_job_is_created_then_unchanged_then_updated_by_its_spec(tmp_path: Path) -> None:
    s = stack(tmp_path, JOBS)
    job = s.service("nightly").spec
    created = plan.plan(s, cluster(tmp_path), prune=False)[-1]
    assert (created.name, created.action, created.job) == ("st_nightly", Action.CREATE, True)
    assert created.as_json()["kind"] == "job"
    again = plan.plan(s, cluster(tmp_path), prune=False, jobs=[job_of(job)])
    assert not plan.changed(again)
    moved = stack(tmp_path, JOBS.replace("0 3 * * *", "0 4 * * *"))
    changes = plan.plan(moved, cluster(tmp_path), prune=False, jobs=[job_of(job)])
    assert [(c.name, c.action) for c in changes if c.action != Action.UNCHANGED] == [
        ("st_nightly", Action.UPDATE)
    ]
    assert [(f.field, f.before, f.after) for f in changes[-1].fields] == [
        ("schedule", "0 3 * * *", "0 4 * * *")
    ]


def test_a_job_the_file_lost_is_kept_or_pruned(tmp_path: Path) -> None:
    job = job_of(stack(tmp_path, JOBS).service("nightly").spec)
    kept = plan.plan(stack(tmp_path), cluster(tmp_path), prune=False, jobs=[job])
    assert [(c.name, c.action, c.job) for c in kept if c.action != Action.UNCHANGED] == [
        ("st_nightly", Action.NOT_IN_FILE, True)
    ]
    pruned = plan.plan(stack(tmp_path), cluster(tmp_path), prune=True, jobs=[job])
    assert pruned[-1].action == Action.REMOVE and pruned[-1].job


def test_a_job_of_another_stack_is_a_conflict(tmp_path: Path) -> None:
    spec = stack(tmp_path, JOBS).service("nightly").spec
    other = job_of(spec.model_copy(update={"labels": {"kube.stack": "other"}}))
    with pytest.raises(StackConflict, match="job st_nightly exists and is not of stack st"):
        plan.plan(stack(tmp_path, JOBS), [], prune=False, jobs=[other])


def test_a_volume_redeployed_unchanged_shows_no_changes(tmp_path: Path) -> None:
    text = FILE.replace("healthcheck:", "volumes: ['pg:/pg'], healthcheck:") + "volumes: {pg: {}}\n"
    changes = plan.plan(stack(tmp_path, text), cluster(tmp_path, text), prune=False)
    assert not plan.changed(changes)
