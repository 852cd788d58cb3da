"""Fuzzing what anyone can publish: for every routing key of kube.commands and kube.results,
bodies drawn from the committed JSON Schemas, and those bodies broken in every way a
hostile or faulty client could (issue 12, "Tests").

In-process, each body goes through the manager's own decoder: a body drawn from the
schema is accepted (or refused only for a rule the models add to the schema), and a
broken one is refused with a DecodeError, never another exception.

Against a real manager, a mock worker and a docker worker, as the quick start's one
broker user, the messages go out raw in batches; after each batch every kube process is
alive, a control task submitted afterwards runs on each worker, nothing valid was
dead-lettered (save the refusals a valid message may earn: an unknown task, a time
too far ahead...), every refused message was dead-lettered once and by kube, with its
reason (not by the broker's delivery limit after the handler failed five times), and
at the end the manager restarts from its store and `kube ps` / `kube nodes` answer.

KUBE_FUZZ_EXAMPLES sets how many messages the cluster run sends (default 500, in
batches of KUBE_FUZZ_BATCH, default 25); KUBE_FUZZ_SEED picks another sequence of
messages (by default each run sends the same ones, so CI is repeatable).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import docker
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from kube.client import Client
from shared import topology
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.fuzz.messages import (
    BY_KEY,
    COMMANDS,
    KINDS,
    MODEL_ONLY_RULES,
    MUTATIONS,
    RESULTS,
    Kind,
    Sent,
    fresh_time,
    refusal,
)
from tests.support.broker import dead_letters
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("KUBE_FUZZ_EXAMPLES", "500"))
BATCH = int(os.environ.get("KUBE_FUZZ_BATCH", "25"))
SEED = os.environ.get("KUBE_FUZZ_SEED")
IN_PROCESS_EXAMPLES = max(100, EXAMPLES // 3)


def repeatable(test: Any) -> Any:
    """Same messages every run unless KUBE_FUZZ_SEED asks for others."""
    return seed(int(SEED))(test) if SEED else test


def fuzz_settings(examples: int, shrink: bool = True) -> Any:
    """Settings for a fuzz test; a cluster's state cannot be replayed, so its run only
    generates (no shrinking, no example database)."""
    phases = list(Phase) if shrink else [Phase.generate]
    return settings(
        max_examples=examples,
        phases=phases,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        suppress_health_check=list(HealthCheck),
    )


# -- in process: the schemas and the decoder agree, and the decoder only ever refuses ----


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.key)
def test_every_body_the_schema_allows_is_accepted(kind: Kind) -> None:
    @fuzz_settings(IN_PROCESS_EXAMPLES)
    @repeatable
    @given(value=kind.strategy())
    def check(value: Any) -> None:
        reason = refusal(kind, json.dumps(value).encode())
        assert reason is None or any(rule in reason for rule in MODEL_ONLY_RULES), (
            f"{kind.key}: the schema allows {json.dumps(value)[:500]} but kube refuses it: {reason}"
        )

    check()


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.key)
def test_every_broken_body_is_refused_with_a_reason(kind: Kind) -> None:
    @fuzz_settings(IN_PROCESS_EXAMPLES)
    @repeatable
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        value = data.draw(kind.strategy())
        how = data.draw(st.sampled_from(sorted(MUTATIONS)))
        body = MUTATIONS[how](value, data.draw)
        started = time.monotonic()
        reason = refusal(kind, body)  # raises if the decoder fails in any other way
        assert time.monotonic() - started < 2.0, f"{how}: slow to decide on {body[:200]!r}"
        assert reason is None or reason.strip()

    check()


# -- against a real cluster ---------------------------------------------------------------

SEMANTIC_REFUSALS = re.compile(
    "|".join(
        [
            r"unknown (task|service|node|task or service) ",
            r"update about unknown task",
            r"ahead of the manager's clock",
            r"cannot join: the cluster has its maximum",
            r"differs from the service",
            r"has no secrets key",  # a spec naming secrets, to a manager without the key
            r"no such (secret|config)",
        ]
    )
)
"""Why a well-formed message may still be refused: it names what does not exist (or a
secret this manager cannot open), or is dated too far ahead. A valid message
dead-lettered for any other reason is a bug."""

GHOSTS = ("fuzz-ghost-1", "fuzz-ghost-2")  # nodes only the fuzzer's heartbeats speak for


@dataclass
class Ledger:
    """What was sent, what the cluster holds, and what came back dead."""

    cluster: Cluster
    nodes: list[str]
    channel: amqp.Channel
    reply_queue: str
    sent: dict[str, Sent] = field(default_factory=dict)
    letters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)  # dead letters not ours
    tasks: dict[str, int] = field(default_factory=dict)  # task id -> attempt
    services: set[str] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    unchecked: list[str] = field(default_factory=list)  # ids sent since the last check
    replies: collections.Counter[str] = field(default_factory=collections.Counter)

    def take_replies(self) -> None:
        while (reply := self.channel.basic_get(self.reply_queue, no_ack=True)) is not None:
            self.replies[str(reply.properties.get("correlation_id"))] += 1

    def take_dead_letters(self) -> None:
        for headers in dead_letters(self.cluster.url):
            fuzz_id = headers.get("x-fuzz-id")
            if isinstance(fuzz_id, bytes):
                fuzz_id = fuzz_id.decode()
            if fuzz_id in self.sent:
                self.letters.setdefault(str(fuzz_id), []).append(headers)
            else:
                self.others.append(headers)


def expect_dead_letter(sent: Sent) -> bool:
    """Whether kube must dead-letter this message: it reached a manager queue that
    dead-letters refusals (commands; results) and was refused."""
    if sent.refused is None:
        return False
    if sent.exchange == RESULTS:
        return sent.routing_key.startswith("result.")
    key = sent.routing_key
    if key.startswith("query."):
        return sent.refused.startswith("reply_to")  # other query errors are only answered
    return key.split(".", 1)[0] in ("task", "service", "node") and "." in key


def expect_reply(sent: Sent, reply_queue: str) -> bool:
    """Whether the manager must answer this request: it asked for an answer in a reply
    queue of its own, and reached the manager's commands or queries queue (query.logs is
    answered by a worker, or when it expires: not within a batch)."""
    family = sent.routing_key.split(".", 1)[0]
    return (
        sent.reply_to == reply_queue
        and sent.exchange == COMMANDS
        and family in ("task", "service", "node", "query")
        and "." in sent.routing_key
        and sent.routing_key != "query.logs"
    )


def classify(exchange: str, key: str, body: bytes, reply_to: str | None) -> str | None:
    """Why the manager refuses this message (None: it takes it), as its handlers decide
    before looking at its store; "unroutable" when no manager queue is bound for it."""
    if exchange == RESULTS:
        if not key.startswith("result."):
            return "unroutable"
        return refusal(BY_KEY["result.update"], body)  # the results union, whatever the key
    family = key.split(".", 1)[0]
    if family not in ("task", "service", "node", "query") or "." not in key:
        return "unroutable"
    refused_reply = topology.reply_refusal(reply_to)
    if refused_reply is not None:
        return refused_reply
    kind = BY_KEY.get(key)
    if kind is None:
        return f"unknown routing key {key!r}"
    return refusal(kind, body)


def steer(value: Any, kind: Kind, ledger: Ledger, rnd: random.Random) -> Any:
    """Point a valid message at things that exist, most of the time, so that it acts.

    Choices among what the cluster holds are made with `rnd` (seeded by one draw), not
    drawn: hypothesis requires that the same choices always make the same draws."""
    if not isinstance(value, dict) or not rnd.randrange(10):
        return value  # one in ten keeps whatever names the schema gave it
    value = dict(value)
    if "node" in value or kind.key.startswith("node."):
        value["node" if "node" in value else "name"] = rnd.choice([*ledger.nodes, *GHOSTS])
    if kind.exchange == RESULTS and "at" in value:
        value["at"] = fresh_time()
    if "task_id" in value and ledger.tasks:
        task_id = rnd.choice(sorted(ledger.tasks))
        value["task_id"] = task_id
        if "attempt" in value:
            value["attempt"] = max(1, ledger.tasks[task_id])
    if kind.key in ("task.stop", "query.task", "query.logs") and ledger.tasks:
        value["id"] = rnd.choice(sorted([*ledger.tasks, *ledger.services]))
    if kind.key in ("service.scale", "service.update") and ledger.services:
        value["name"] = rnd.choice(sorted(ledger.services))
        if kind.key == "service.update":
            value["spec"] = {**value["spec"], "name": value["name"]}
    if kind.key == "task.submit" and not rnd.randrange(3):
        value["replicas"] = rnd.randrange(4)  # a service, one time in three
    if kind.key == "result.heartbeat" and value.get("node") in ledger.nodes:
        value["inventory"] = False  # a forged full inventory would only mark tasks lost
    return value


PROPERTY_MUTATIONS = ("wrong routing key", "reply_to of another queue", "big headers")
ABSURD_PARTS = ["-1", "0", "25", "26", "1000000000", str(2**63), "1e999", "2.5", '"3"']


def message(data: st.DataObject, ledger: Ledger) -> Sent:
    """Draw one message: a valid body for a routing key, perhaps broken."""
    kind = data.draw(st.sampled_from(KINDS))
    rnd = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    value = steer(data.draw(kind.strategy()), kind, ledger, rnd)
    node = value.get("node") if isinstance(value, dict) else None
    key = kind.routing_key(node if isinstance(node, str) else ledger.nodes[0])
    body = json.dumps(value).encode()
    reply_to: str | None = ledger.reply_queue if data.draw(st.booleans()) else None
    headers: dict[str, Any] = {}
    mutations = [*sorted(MUTATIONS), *PROPERTY_MUTATIONS]
    if kind.key == "result.heartbeat":
        mutations.append("absurd parts")
    hows = data.draw(
        st.just([])
        | st.lists(
            st.sampled_from(mutations),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    for how in hows:
        if how == "wrong routing key":
            key = data.draw(
                st.sampled_from([k.routing_key("x") for k in KINDS])
                | st.sampled_from(["task.explode", "query.everything", "result.", "nothing",
                                   f"result.heartbeat.{ledger.nodes[1]}", "node", "#"])
            )  # fmt: skip
        elif how == "reply_to of another queue":
            reply_to = data.draw(
                st.sampled_from(
                    [topology.node_queue(ledger.nodes[0]), topology.COMMANDS_QUEUE,
                     topology.DEAD_LETTER_QUEUE, "no-such-queue", "amq.gen-no-such-queue"]
                )
            )  # fmt: skip
        elif how == "big headers":  # 130,500: kube's dead-letter copy adds its reason
            headers["x-padding"] = "h" * data.draw(st.sampled_from([1000, 60_000, 130_500]))
        elif how == "absurd parts":
            part, parts = (data.draw(st.sampled_from(ABSURD_PARTS)) for _ in range(2))
            fields = {**value, "part": "PART", "parts": "PARTS"} if isinstance(value, dict) else {}
            text = json.dumps(fields).replace('"PARTS"', parts).replace('"PART"', part)
            body = text.encode()
        else:
            body = MUTATIONS[how](value, data.draw)
    exchange = kind.exchange if not key.startswith(("result", "nothing")) else RESULTS
    if key.startswith(("task.", "service.", "node.", "query.")):
        exchange = COMMANDS
    fuzz_id = f"m{next(ledger.counter)}"
    return Sent(
        id=fuzz_id,
        exchange=exchange,
        routing_key=key,
        body=body,
        how=" + ".join(hows) or "valid",
        refused=classify(exchange, key, body, reply_to),
        reply_to=reply_to,
        headers={**headers, "x-fuzz-id": fuzz_id},
    )


@contextlib.contextmanager
def publisher(url: str) -> Iterator[tuple[amqp.Channel, str]]:
    """A py-amqp channel with confirms, and a server-named queue for replies."""
    vhost = url.rsplit("/", 1)[1]
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        channel.confirm_select()
        reply_queue, _, _ = channel.queue_declare("", exclusive=True, auto_delete=True)
        yield channel, reply_queue


def publish(channel: amqp.Channel, sent: Sent) -> None:
    properties: dict[str, Any] = {"user_id": "guest", "application_headers": sent.headers}
    if sent.reply_to:
        properties["reply_to"] = sent.reply_to
        properties["correlation_id"] = sent.id
    channel.basic_publish(
        amqp.Message(sent.body, delivery_mode=2, **properties),
        exchange=sent.exchange,
        routing_key=sent.routing_key,
    )


def queue_depths(url: str) -> dict[str, int]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", url.rsplit("/", 1)[1], "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    depths = {}
    for line in out.splitlines():
        name, _, count = line.rpartition("\t")
        if name.startswith("kube.manager.") and count.isdigit():
            depths[name] = int(count)
    return depths


def run_control_tasks(client: Client, ledger: Ledger, image: str, batch: int) -> None:
    """A task on each worker, submitted now, reaches running."""
    for node in ledger.nodes:
        client.uncordon(node)  # the fuzzer may have cordoned or drained it
    specs = [
        TaskSpec(name=f"control-mock-{batch}", image="fuzz/control", constraints={"fuzz": "mock"}),
        TaskSpec(
            name=f"control-docker-{batch}",
            image=image,
            command=("sleep", "300"),
            pull_policy="never",  # type: ignore[arg-type]
            restart={"policy": "never"},  # type: ignore[arg-type]
            constraints={"fuzz": "docker"},
        ),
    ]
    ids = [client.submit(spec) for spec in specs]
    for task_id, spec in zip(ids, specs, strict=True):
        try:
            client.wait(task_id, {TaskState.RUNNING}, timeout=90)
        except Exception as exc:
            raise AssertionError(
                f"after batch {batch}, control task {spec.name} did not run: {exc};"
                f" it is {client.get(task_id)}"
            ) from exc
    client.stop(ids[1])  # one container at a time on the docker worker


def check_batch(ledger: Ledger, image: str, batch: int) -> None:
    """A client of its own for each check: one kept idle while a batch is published would
    miss its heartbeats (pika's blocking connection only sends them while in use)."""
    with Client(Settings(amqp_url=ledger.cluster.url, request_timeout=20)) as client:
        check_with(ledger, client, image, batch)


def check_with(ledger: Ledger, client: Client, image: str, batch: int) -> None:
    cluster = ledger.cluster
    dead = {
        name: proc.returncode for name, proc in cluster.procs.items() if proc.poll() is not None
    }
    assert not dead, f"after batch {batch}, processes ended: {dead}"
    run_control_tasks(client, ledger, image, batch)
    wait_for(
        lambda: not any(queue_depths(cluster.url).values()),
        timeout=120,
        what=f"the manager to work through batch {batch}",
    )
    due = [i for i in ledger.unchecked if expect_dead_letter(ledger.sent[i])]

    asked = [i for i in ledger.unchecked if expect_reply(ledger.sent[i], ledger.reply_queue)]

    def all_due_arrived() -> bool:
        ledger.take_dead_letters()
        ledger.take_replies()
        return all(i in ledger.letters for i in due) and all(i in ledger.replies for i in asked)

    with contextlib.suppress(AssertionError):
        wait_for(all_due_arrived, timeout=20, interval=0.5, what="dead letters")
    ledger.take_dead_letters()
    problems: list[str] = []
    for fuzz_id in ledger.unchecked:
        sent = ledger.sent[fuzz_id]
        letters = ledger.letters.get(fuzz_id, [])
        reasons = [str(h.get(topology.REASON_HEADER, "")) for h in letters]
        if any(not reason for reason in reasons):
            deaths = [h.get("x-death") or h.get("x-first-death-reason") for h in letters]
            problems.append(
                f"dead-lettered by the broker, not by kube ({deaths}): {sent.describe()}"
            )
        if len(letters) > 1:
            problems.append(f"dead-lettered {len(letters)} times: {sent.describe()}")
        if sent.valid and letters and not all(SEMANTIC_REFUSALS.search(r) for r in reasons):
            problems.append(f"valid, but dead-lettered ({reasons}): {sent.describe()}")
        if expect_dead_letter(sent) and not letters:
            problems.append(f"refused ({sent.refused}) but not dead-lettered: {sent.describe()}")
        answers = ledger.replies[fuzz_id]
        if expect_reply(sent, ledger.reply_queue) and answers != 1:
            problems.append(f"answered {answers} times: {sent.describe()}")
    for headers in ledger.others:
        where = headers.get("x-kube-queue") or headers.get("x-first-death-queue")
        problems.append(f"a dead letter the fuzzer did not send, from {where}: {headers}")
    ledger.others.clear()
    assert not problems, f"after batch {batch}:\n" + "\n".join(problems)
    ledger.unchecked.clear()
    for task in client.list():
        ledger.tasks[task.id] = task.attempt
    ledger.services = {service.name for service in client.services()}


@pytest.fixture
def fuzz_cluster(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """A manager, a mock worker and a docker worker that runs only the busybox image."""
    workers = {
        "mock": ("--runtime", "mock", "--label", "fuzz=mock"),
        "docker": ("--label", "fuzz=docker", "--allow-image", "localhost/kube-busybox*"),
    }
    with running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster:
        yield cluster


@pytest.mark.e2e
def test_nothing_anyone_sends_crashes_poisons_or_starves_the_manager(
    fuzz_cluster: Cluster, busybox_image: str
) -> None:
    cluster = fuzz_cluster
    started = time.monotonic()
    with publisher(cluster.url) as (channel, reply_queue):
        ledger = Ledger(cluster, list(cluster.nodes), channel, reply_queue)
        batches = itertools.count(1)

        # given a cluster that is fed generated messages, valid and broken, in batches
        @fuzz_settings(EXAMPLES, shrink=False)
        @repeatable
        @given(data=st.data())
        def send(data: st.DataObject) -> None:
            sent = message(data, ledger)
            ledger.sent[sent.id] = sent
            ledger.unchecked.append(sent.id)
            publish(channel, sent)
            # then after each batch, everything still works and nothing valid was lost
            if len(ledger.unchecked) >= BATCH:
                check_batch(ledger, busybox_image, next(batches))

        send()
        if ledger.unchecked:
            check_batch(ledger, busybox_image, next(batches))

    # and the manager restarts from its store, and answers
    cluster.stop("manager")
    cluster.start_manager()
    for command in (("ps",), ("nodes",)):
        wait_for(
            lambda command=command: cluster.kube(*command).returncode == 0,
            timeout=60,
            what=f"kube {' '.join(command)} to answer after the restart",
        )
    assert all(proc.poll() is None for proc in cluster.procs.values())
    valid = sum(sent.valid for sent in ledger.sent.values())
    print(
        f"fuzz: sent {len(ledger.sent)} messages ({valid} valid, {len(ledger.letters)}"
        f" dead-lettered) in {time.monotonic() - started:.0f}s; the manager holds"
        f" {len(ledger.tasks)} tasks, {len(ledger.services)} services"
    )
