"""The worker process: runs the containers its node queue asks for and reports on them.

Threads: the bus thread owns the AMQP connection and never waits on the engine; engine
calls run in a bounded pool (`WorkerConfig.concurrency` containers start at once), and
the engine's event stream has a thread of its own. Both hand their results back to the
bus thread with `Bus.call_threadsafe`, where updates and heartbeats are queued in order;
once the deliveries and callbacks that had arrived are handled, the queue is published
with confirms as one stream and only then are the dispatches it reports on acked. A
dispatch is acked once its container started, never at container exit: tasks may run
for days, longer than RabbitMQ's consumer timeout.

Stops run in a pool of their own (`MAX_STOPS_AT_ONCE`), so that their grace periods run
together rather than behind starts or each other. A thread of its own
(`worker.disconnect.Watch`) stops the containers whose task asked for it once the worker
has been out of touch with the broker for long enough, with no broker and whatever the
bus thread is doing; the bus drops a connection the broker has not confirmed on for three
heartbeats and makes a new one.

Each (task, attempt) is one `worker.attempt.Attempt`, kept by `worker.runner.Runners`
on the bus thread: it takes the attempt's events in order (a stop during the start is
held until the start is done) and is forgotten when the attempt ends. This module is the
wiring: the bus, the engine calls, heartbeats and the confirmed stream of results.

Stopping the worker leaves its containers running; a worker that starts again reports
what it finds (reconciliation), so nothing is orphaned or started twice. A container no
task of its cluster placed (another cluster's, or one the manager says it never placed:
`Disowned`) is an orphan: left running, listed in heartbeats, and removed or adopted
only at a person's request (docs/orphans.md): never taken over, removed or run beside by
a RunTask of its task id (`_orphan_in_the_way`), nor removed by a stop.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import ValidationError

from shared import images, topology
from shared.bus import Bus, Delivery, MessageBus, Outbound
from shared.bus.connection import silent_after
from shared.codec import decode, describe, encode
from shared.errors import (
    ConnectionLost,
    DecodeError,
    EngineUnavailable,
    ImageNotFound,
    MessagingError,
    ResourceLocked,
    RuntimeFailure,
    SecretError,
)
from shared.files import FilesReply, FilesRequest
from shared.messages import (
    DISPATCH,
    MAX_ORPHAN_BYTES,
    MAX_ORPHANS_LISTED,
    AdoptOrphan,
    ClockAhead,
    ClusterInfo,
    Disowned,
    Heartbeat,
    HeldTask,
    KeptOutput,
    LogsReply,
    LogsRequest,
    Orphan,
    RemoveOrphan,
    RemoveVolume,
    RunTask,
    StopTask,
    TaskUpdate,
)
from shared.models import Health
from shared.sessions import StreamInput, StreamStart
from shared.settings import Settings
from shared.specs import TaskSpec, least_stop_after
from shared.states import TaskState
from worker import claim
from worker.address import detect as detect_address
from worker.attempt import Key, Report, StartFailed
from worker.attempt_output import OutputKeeper
from worker.config import WorkerConfig
from worker.disconnect import KILL_GRACE, Contact, Watch
from worker.epochs import Epochs
from worker.exec_source import exec_opener
from worker.files import Files, default_root
from worker.health import HealthMonitor
from worker.log_reply import logs_reply
from worker.metrics import STALE_DISPATCHES
from worker.runner import Runners
from worker.runtime.base import (
    ContainerExit,
    ContainerInfo,
    ContainerStatus,
    ExitWatch,
    Runtime,
    Stray,
)
from worker.stats import detect_capacity, measure
from worker.streams import FLUSH_INTERVAL, Streams, opener

log = logging.getLogger(__name__)


T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


MAX_STOPS_AT_ONCE = 64
"""Containers a worker stops at the same time, each waiting out its grace period (10 s,
then SIGKILL); the engine's stop calls block, so each takes a thread."""

ORPHAN_SCAN_SECONDS = 10.0
"""How often the worker looks for orphan containers (no task of its cluster), besides
after each listing of the engine and each change it was told of: one list call."""


class Worker:
    """Consumes a node queue, drives a Runtime, publishes updates and heartbeats."""

    def __init__(
        self,
        settings: Settings,
        config: WorkerConfig,
        runtime: Runtime,
        bus: MessageBus | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.settings = settings if bus is None else None  # for claim.holder
        self.hostname, self.pid = socket.gethostname(), os.getpid()
        self.runtime = runtime
        self.bus: MessageBus = bus or Bus(
            settings,
            f"kube-worker-{config.name}",
            # twice the starts at once: a start waiting for its secrets (worker/files.py)
            # must leave room for their reply, which comes on this same queue
            prefetch=2 * config.concurrency,
            silent_after=silent_after(config.heartbeat_interval),
        )
        self._user = self.bus.user
        self._beat_key = topology.result_key("heartbeat", config.name)
        self.capacity = config.capacity or detect_capacity()
        self.address = config.address or detect_address(settings.amqp_urls[0])
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="engine")
        self._watch: ExitWatch | None = None
        self._engine_ok = True
        self.cluster: str | None = None  # the manager's cluster id, once it said (_join)
        self.epochs = Epochs()  # the newest leader epoch seen (worker/epochs.py)
        self._early_stops: list[tuple[StopTask, Delivery]] = []  # held until _join
        # Attempts the manager never placed (Disowned): left running, listed as orphans.
        # Replaced, never changed in place: the engine threads read it as it is.
        self.disowned: frozenset[Key] = frozenset()
        self._orphans: tuple[tuple[Orphan, ...], int] = ((), 0)  # listed, left out
        self._orphan_changes = 0  # bumped by each change a scan under way may have missed
        self._claimed = False  # whether this process consumes its node queue (_claim_queue)
        self._inventory = False  # true once the engine's containers have been listed
        self._results: list[Outbound] = []  # updates and heartbeats, in order (bus thread)
        self._refused = False  # whether the broker refused the last batch (one log a spell)
        self._settled: list[Delivery] = []  # dispatches to ack once those are confirmed
        self.contact = Contact(least_stop_after(config.heartbeat_interval))
        self._cut_watch = Watch(self.contact, self._cut_off)
        # Stops do not wait behind starts in the pool, nor behind each other: their grace
        # periods run together (8 stale copies with a 10 s grace took 24 s in line).
        self.stops = ThreadPoolExecutor(MAX_STOPS_AT_ONCE, thread_name_prefix="stop")
        self.health = HealthMonitor(runtime, self._on_health)
        self.output = OutputKeeper(config.name, runtime.output_end, self._send_output)
        self.files = Files(config.files_dir or default_root(), self.name, self._ask_files)
        self.streams = Streams(
            self.name,
            opener(runtime, exec_opener(runtime, config.policy, self.name)),
            send=lambda frame: self._results.append(self._result("stream", encode(frame))),
            wake=lambda: self.bus.call_threadsafe(self.streams.flush),
        )
        self.runners: Runners[Delivery] = Runners(
            start=self._start,
            remove=self._remove,
            background=self._background,
            stopping=lambda job: self._background(job, self.stops),
            call_soon=self.bus.call_threadsafe,
            publish=self._publish,
            settle=self._settle,
            health=self.health,
        )

    # -- life cycle --------------------------------------------------------------------

    def setup(self) -> None:
        self.bus.declare(topology.worker_topology(self.name))
        self.bus.on_connect(self._claim_queue)  # first: nothing is sent before the check
        self.bus.every(self.config.heartbeat_interval, self.send_heartbeat)
        self.bus.on_connect(self.send_heartbeat)
        self.bus.on_connect(self.flush)
        self.bus.after_events(self.flush)
        self.bus.every(ORPHAN_SCAN_SECONDS, self._scan_orphans)
        self.bus.every(FLUSH_INTERVAL, self.streams.flush)
        # The engine is read once the manager says which cluster this node is in (_join).
        self._cut_watch.start()

    def _claim_queue(self) -> None:
        """Consume the node's queue, unless another worker of the same name already does:
        two processes sharing one node's queue and name would each report the other's
        containers as gone, and the manager would end every task there (worker/claim.py).
        The manager is asked who holds the name (claim.ASK_TIMEOUT at most), but not on a
        stand-in bus (no settings)."""
        if self._claimed:
            return  # the bus consumes it again after each reconnect
        queue = topology.node_queue(self.name)
        consumers = self.bus.consumers_of(queue)
        held = claim.holder(self.settings, self.name) if self.settings else None
        refused = claim.refusal(self.name, consumers, held, self.hostname)
        if refused is not None:
            raise ResourceLocked(refused)
        # The check above is for the message; this is the broker's atomic one, taken at
        # start only: after a reconnect the broker may still hold this process's previous
        # connection, and with it the lock, for a while (its missed heartbeats); waiting
        # for it would delay fencing after a partition's heal. The node queue's consumer,
        # re-made at once, is what a later worker of this name is refused by.
        try:
            self.bus.declare(topology.node_lock(self.name), again=False)
        except ResourceLocked as exc:  # another one started at the same instant
            raise ResourceLocked(claim.taken(self.name, held)) from exc
        self.bus.consume(queue, self.on_dispatch)
        self._claimed = True

    def run(self) -> None:
        self.setup()
        log.info(
            "worker %s: %.1f cpus, %d bytes memory, labels %s",
            self.name,
            self.capacity.cpus,
            self.capacity.memory,
            self.config.labels,
        )
        try:
            self.bus.run()
        finally:
            self.close()

    def close(self) -> None:
        self.bus.stop()
        self.streams.close()
        watch = self._watch
        if watch is not None:
            watch.close()
        self.health.close()
        self._cut_watch.close()
        self.stops.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _watch_engine(self) -> None:
        """Reconcile with the engine, then follow its exit events; again after it restarts."""
        delay = 0.5
        while not self.bus.stopping:
            try:
                self._reconcile()
                self._watch = self.runtime.watch_exits(self._on_exit, self._on_engine_error)
                self._set_engine(True)
                return
            except RuntimeFailure as exc:
                self._set_engine(False)
                log.warning("worker %s: engine unavailable (%s); retrying", self.name, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _on_engine_error(self, exc: Exception) -> None:
        log.warning("worker %s: lost the engine's event stream: %s", self.name, exc)
        self._set_engine(False)
        if not self.bus.stopping:
            self.pool.submit(self._watch_engine)

    def _set_engine(self, ok: bool) -> None:
        if ok != self._engine_ok:
            log.info("worker %s: engine %s", self.name, "available" if ok else "unavailable")
        self._engine_ok = ok
        if not ok:
            self._inventory = False

    def _reconcile(self) -> None:
        """Report every container this node holds, as the engine sees it now, and list its
        orphans with it: a heartbeat that says it lists every container lists those too
        (an adopted one a restarted worker has forgotten is among them)."""
        disowned, changes = self.disowned, self._orphan_changes
        self.runners.listing()
        found = [i for i in self.runtime.list() if (i.task_id, i.attempt) not in disowned]
        for info in found:
            if info.status == ContainerStatus.RUNNING:
                self.contact.track((info.task_id, info.attempt), info.stop_after)
        strays, total = self.runtime.strays(disowned, MAX_ORPHANS_LISTED)
        listed = orphan_list(strays)
        running = [i for i in found if i.status == ContainerStatus.RUNNING]
        self.files.sweep([(i.task_id, i.attempt) for i in running])

        def apply() -> None:
            self.runners.reconciled(found)
            self._set_orphans(listed, total, changes)
            self._inventory = True

        self.bus.call_threadsafe(apply)

    # -- dispatches --------------------------------------------------------------------

    def on_dispatch(self, delivery: Delivery) -> None:
        try:
            message = decode(DISPATCH, delivery.body, unique_keys=False)  # from the manager
        except DecodeError as exc:
            log.warning("worker %s: dead-lettering a bad dispatch: %s", self.name, exc.reason)
            self.bus.dead_letter(delivery, f"invalid dispatch: {exc.reason}")
            return
        if not isinstance(message, ClockAhead) and not self._admit(message):
            self._settled.append(delivery)  # acked and dropped: a deposed manager sent it
            return
        if isinstance(message, ClusterInfo):
            self._join(message.cluster)
            self._settled.append(delivery)
        elif isinstance(message, ClockAhead):
            log.error(
                "worker %s: the manager refuses this worker's results: its clock is %.0f s"
                " ahead of the manager's (at most %.0f s); fix the clock (NTP)",
                self.name,
                message.ahead,
                message.limit,
            )
            self._settled.append(delivery)
        elif isinstance(message, RunTask):
            if message.cluster is not None:
                self._join(message.cluster)
            # A container this worker lists as an orphan is never taken over nor removed
            # by a RunTask of its task id, whoever sent it: only `kube orphans adopt`
            # makes it a task (_start refuses the attempt while it is there).
            self.runners.run((message.task_id, message.attempt), message.spec, delivery)
        elif isinstance(message, LogsRequest):
            self._logs(message, delivery)
        elif isinstance(message, FilesReply):
            self.files.answered(message)
        elif isinstance(message, RemoveVolume):
            self._remove_volume(message.name)
            self._settled.append(delivery)
        elif isinstance(message, StreamStart):
            self.streams.start(message)
            self._settled.append(delivery)
        elif isinstance(message, StreamInput):
            self.streams.heard(message)
            self._settled.append(delivery)
        elif isinstance(message, Disowned | RemoveOrphan | AdoptOrphan):
            self._orphan_dispatch(message)
            self._settled.append(delivery)
        elif self.cluster is None:
            # Not yet told its cluster (a worker restarted while its node was still ready):
            # its containers cannot be told from another cluster's yet, so the stop waits
            # for _join, which follows at the manager's answer to its first heartbeat.
            self._early_stops.append((message, delivery))
        else:
            self.runners.stop((message.task_id, message.attempt), delivery)

    def _admit(
        self,
        message: RunTask
        | FilesReply
        | StopTask
        | LogsRequest
        | ClusterInfo
        | Disowned
        | RemoveOrphan
        | AdoptOrphan
        | StreamStart
        | StreamInput
        | RemoveVolume,
    ) -> bool:
        """Whether a dispatch comes from the newest leader this worker has seen (not from
        a manager deposed since: worker/epochs.py)."""
        cluster = message.cluster if isinstance(message, RunTask | ClusterInfo) else None
        if cluster is not None and self.cluster is not None and cluster != self.cluster:
            self.epochs.forget()  # another cluster (a new store): its epochs start again
        if self.epochs.admit(message.epoch):
            return True
        STALE_DISPATCHES.inc()
        if self.epochs.first_refusal(message.epoch):
            log.warning(
                "worker %s: refusing a %s dispatch from a deposed manager (epoch %d; the"
                " leader's is %d)",
                self.name,
                message.kind,
                message.epoch,
                self.epochs.newest,
            )
        return False

    def _join(self, cluster: str) -> None:
        """The manager says which cluster this node is in: only that cluster's containers
        (and unlabelled ones, from before cluster ids) are listed, watched and touched, so
        two clusters on one engine never touch each other's. The engine is reconciled from
        then on; told another cluster (its manager's database was replaced), the worker
        follows its manager and lists again: the other cluster's containers are orphans,
        listed as such but never reported as tasks, stopped or removed."""
        if cluster == self.cluster:
            return
        if self.cluster is None:
            log.info("worker %s: in cluster %s", self.name, cluster)
        else:
            log.warning(
                "worker %s: now in cluster %s, not %s; leaving that cluster's containers alone",
                self.name,
                cluster,
                self.cluster,
            )
            # Not this cluster's: never reported as tasks, stopped or removed (orphans).
            for key in self.runners.forget_all():
                self.contact.forget(key)
        self.cluster = cluster
        self.runtime.join(cluster)
        early, self._early_stops = self._early_stops, []
        for stop, held in early:
            self.runners.stop((stop.task_id, stop.attempt), held)
        self._inventory = False
        watch, self._watch = self._watch, None

        def rewatch() -> None:
            if watch is not None:
                watch.close()
            self._watch_engine()

        self.pool.submit(rewatch)

    def _remove_volume(self, name: str) -> None:
        """In the pool: remove a volume the manager forgot (`kube volume rm`)."""

        def remove() -> None:
            try:
                removed = self._with_engine(lambda: self.runtime.remove_volume(name))
            except RuntimeFailure as exc:
                log.warning("worker %s: volume %s not removed: %s", self.name, name, exc)
            else:
                said = "removed" if removed else "already gone from the engine"
                log.info("worker %s: volume %s %s", self.name, name, said)

        self._background(remove, self.stops)

    # -- orphans: containers no task of this cluster placed (docs/orphans.md) ------------

    def _orphan_dispatch(self, message: Disowned | RemoveOrphan | AdoptOrphan) -> None:
        """On the bus thread: the manager disowns containers, removes or adopts an orphan."""
        self._orphan_changes += 1
        if isinstance(message, Disowned):
            for held in message.tasks:
                key = (held.task_id, held.attempt)
                if not self.runners.forget(key):
                    continue  # being started or stopped here, or gone: its runner finishes
                log.warning(
                    "task %s: attempt %d is no task of this cluster's manager: left running,"
                    " reported as an orphan",
                    *key,
                )
                self.disowned |= {key}
                self.contact.forget(key)
            self._scan_orphans()
        elif isinstance(message, RemoveOrphan):
            disowned = self.disowned

            def remove() -> None:
                short = message.container_id[:12]
                try:
                    self._with_engine(
                        lambda: self.runtime.remove_stray(message.container_id, disowned)
                    )
                except RuntimeFailure as exc:
                    log.warning("worker %s: orphan %s not removed: %s", self.name, short, exc)
                else:
                    log.warning("worker %s: removed orphan container %s", self.name, short)
                self.bus.call_threadsafe(self._scan_orphans)

            self._background(remove, self.stops)
        else:
            key = (message.task_id, message.attempt)
            log.warning(
                "task %s: attempt %d adopted (container %s)", *key, message.container_id[:12]
            )
            self.runtime.adopt(message.container_id)
            self.disowned -= {key}
            listed, left_out = self._orphans
            kept = tuple(o for o in listed if o.container_id != message.container_id)
            self._orphans = (kept, left_out)
            self._background(self._reconcile)  # list again: the attempt is reported

    def _scan_orphans(self) -> None:
        """On the bus thread: look for orphan containers in the pool, once the cluster is
        known; the next heartbeats list what it found."""
        if self.cluster is None:
            return
        disowned, changes = self.disowned, self._orphan_changes

        def scan() -> None:
            found, total = self._with_engine(
                lambda: self.runtime.strays(disowned, MAX_ORPHANS_LISTED)
            )
            listed = orphan_list(found)
            self.bus.call_threadsafe(lambda: self._set_orphans(listed, total, changes))

        self._background(scan)

    def _set_orphans(self, listed: tuple[Orphan, ...], total: int, changes: int) -> None:
        """On the bus thread: a scan's outcome, unless something changed since it began
        (an adoption, a removal): then it is stale, and the next scan is due already."""
        if changes == self._orphan_changes:
            self._orphans = (listed, total - len(listed))

    def _start(self, key: Key, spec: TaskSpec) -> ContainerInfo | StartFailed:
        """In the pool: start an attempt's container, unless the policy refuses it."""
        log.info("task %s: starting attempt %d (%s)", key[0], key[1], spec.image)
        refused = self.config.policy.violations(spec)
        if refused:
            reason = f"refused by the security policy of {self.name}: {'; '.join(refused)}"
            log.warning("task %s: %s", key[0], reason)
            return StartFailed(reason)
        in_the_way = self._orphan_in_the_way(key)
        if in_the_way is not None:
            log.warning("task %s: %s", key[0], in_the_way)
            return StartFailed(in_the_way)
        stale = self._remove_older(key)
        if stale is not None:
            return StartFailed(stale)
        try:
            files = self.files.fetch(key, spec)
        except SecretError as exc:
            log.warning("task %s: attempt %d: %s", key[0], key[1], exc)
            return StartFailed(str(exc))
        try:
            info = self._with_engine(lambda: self.runtime.start(key[0], key[1], spec, files))
        except ImageNotFound as exc:
            if exc.problem is None:  # may pass (a registry that timed out): restarted
                log.warning("task %s: could not start: %s", key[0], exc)
                return StartFailed(str(exc))
            why = images.describe(spec.image, exc.problem, self.name, exc.said)
            log.warning("task %s: %s", key[0], why)
            return StartFailed(why, exc.problem)
        except RuntimeFailure as exc:
            log.warning("task %s: could not start: %s", key[0], exc)
            return StartFailed(str(exc))
        except Exception as exc:  # answered all the same: the attempt must not wait for ever
            log.exception("task %s: starting attempt %d failed", key[0], key[1])
            return StartFailed(f"the worker failed to start it: {type(exc).__name__}: {exc}")
        if info.status == ContainerStatus.RUNNING:
            self.contact.track(key, info.stop_after)
        return info

    def _orphan_in_the_way(self, key: Key) -> str | None:
        """In the pool, before attempt N starts: why not, when a container of this task at
        attempt N or older runs here as an orphan (disowned). Starting would take it over
        (the same name) or remove it (an older attempt), and an orphan is a person's to
        adopt or remove, never a RunTask's: a task id reused by a client, or an older store
        restarting the task, must not kill it nor put a new spec on it (docs/orphans.md).
        A disowned attempt whose container is gone is this cluster's again."""
        task_id, attempt = key
        disowned = {k for k in self.disowned if k[0] == task_id and k[1] <= attempt}
        if not disowned:
            return None
        try:
            found = self._with_engine(lambda: self.runtime.list(task_id))
        except RuntimeFailure as exc:
            return f"could not look for orphan containers of the task on {self.name}: {exc}"
        orphans = [i for i in found if (i.task_id, i.attempt) in disowned]
        if orphans:
            return orphan_in_the_way(min(orphans, key=lambda i: i.attempt), self.name)
        self.bus.call_threadsafe(lambda: self._owned(disowned))
        return None

    def _owned(self, keys: set[Key]) -> None:
        """On the bus thread: disowned attempts whose containers are gone are no longer
        kept apart (a new attempt of that key is listed and reported as usual)."""
        self.disowned -= keys

    def _remove_older(self, key: Key) -> str | None:
        """In the pool, before attempt N starts: remove this node's older attempts of the
        task first (a restarted worker may not have adopted them yet), so that two copies
        of one task never run here at once; None, or why one could not be removed. A first
        attempt has none: the engine is not asked."""
        task_id, attempt = key
        if attempt <= 1:
            return None
        try:
            found = self._with_engine(lambda: self.runtime.list(task_id))
        except RuntimeFailure as exc:
            return f"could not look for older attempts of the task on {self.name}: {exc}"
        for older in sorted(i.attempt for i in found if i.attempt < attempt):
            log.warning(
                "task %s: removing attempt %d before starting attempt %d (never two copies"
                " of one task on a node)",
                task_id,
                older,
                attempt,
            )
            error = self._remove((task_id, older))
            if error is not None:
                return f"attempt {older} of the task still runs on {self.name}: {error}"
        return None

    def _remove(self, key: Key, grace: float = 10.0) -> str | None:
        """In the pool: stop and remove an attempt's container, SIGKILL after `grace`
        seconds; None, or why it failed. An orphan's (disowned) is left running: only a
        person's `kube orphans remove` removes it (an attempt that could not start because
        of it ends here too, and shares its name)."""
        if key in self.disowned:
            log.info("task %s: attempt %d is an orphan here: left running", *key)
            return None
        try:
            self._with_engine(lambda: self.runtime.stop(key[0], key[1], grace))
            self.output.removing(key)  # its last lines, stop included, for the manager
            self._with_engine(lambda: self.runtime.remove(key[0], key[1], grace))
        except RuntimeFailure as exc:
            log.warning("task %s: could not remove attempt %d: %s", key[0], key[1], exc)
            return str(exc)
        except Exception as exc:  # answered all the same: the attempt must not wait for ever
            log.exception("task %s: removing attempt %d failed", key[0], key[1])
            return f"{type(exc).__name__}: {exc}"
        log.info("task %s: attempt %d stopped and removed", key[0], key[1])
        self.output.removed(key)
        self.files.remove(key)
        self.contact.forget(key)
        return None

    def _cut_off(self, key: Key, silent: float) -> None:
        """From the disconnect watch: stop a container whose task asked for it, this worker
        being out of touch with the broker for `silent` seconds. The attempt hears of it on
        the bus thread, once there is a connection again, and then reports it."""
        log.warning(
            "task %s: stopping attempt %d: %.1fs out of touch with the broker", *key, silent
        )
        self.bus.call_threadsafe(lambda: self.runners.cut_off(key, silent))

        def stop() -> None:
            error = self._remove(key, KILL_GRACE)
            if error is not None:
                self.contact.retry(key)
            self.bus.call_threadsafe(lambda: self.runners.cut_off_done(key, error))

        self._background(stop, self.stops)

    def _with_engine(self, call: Callable[[], T]) -> T:
        """Run an engine call, waiting (bounded) for an engine that is restarting."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return call()
            except EngineUnavailable:
                self._set_engine(False)
                if time.monotonic() > deadline or self.bus.stopping:
                    raise
                time.sleep(1)

    # -- exits and health, from their own threads ----------------------------------------

    def _on_exit(self, event: ContainerExit) -> None:
        self.contact.forget((event.task_id, event.attempt))
        self.files.remove((event.task_id, event.attempt))
        self.bus.call_threadsafe(lambda: self.runners.exited(event))

    def _on_health(self, key: Key, health: Health, detail: str) -> None:
        self.bus.call_threadsafe(lambda: self.runners.health_changed(key, health, detail))

    def _ask_files(self, request: FilesRequest) -> None:
        """From the pool: ask the manager for an attempt's secrets and configs."""
        body = encode(request)
        self.bus.call_threadsafe(lambda: self._results.append(self._result("files", body)))

    # -- logs --------------------------------------------------------------------------

    def _logs(self, request: LogsRequest, delivery: Delivery) -> None:
        """Answer on kube.results (the manager relays it). A request past its time never
        comes: the broker drops it (its AMQP expiration), judged by the broker's clock."""

        def read() -> None:
            reply = logs_reply(self.name, request, self.runtime.logs)
            self.bus.call_threadsafe(lambda: answer(reply))

        def answer(reply: LogsReply) -> None:
            self._results.append(self._result("logs", encode(reply)))
            self._settled.append(delivery)  # acked once the reply is confirmed

        self.pool.submit(read)

    # -- reporting ---------------------------------------------------------------------

    def send_heartbeat(self) -> None:
        """Queue a heartbeat behind the updates queued before it, which reach the manager
        first: it never names a container whose start was not reported, nor misses one
        whose exit was not."""
        held = tuple(
            HeldTask(task_id=t, attempt=a, state=TaskState.RUNNING, container_id=c)
            for (t, a), c in self.runners.alive
        )
        beat = Heartbeat(
            node=self.name,
            at=utcnow(),
            cpus=self.capacity.cpus,
            memory=self.capacity.memory,
            disk=self.capacity.disk,
            labels=self.config.labels,
            stats=measure(),
            cluster=self.cluster,
            hostname=self.hostname[:253] or None,
            pid=self.pid,
            engine_ok=self._engine_ok,
            address=self.address,
            inventory=self._inventory,
            orphans=self._orphans[0],
            orphans_left_out=self._orphans[1],
        )
        for part in beat.in_parts(held):
            self._results.append(self._result("heartbeat", encode(part)))

    def flush(self) -> None:
        """Publish the queued updates and heartbeats as one confirmed stream, then ack the
        dispatches they report on. What the broker did not take is kept for the next try.

        Callbacks and timers run while confirms are awaited; what they queue is the next
        batch, sent at once rather than after the connection's next wait for events.
        """
        while self._results or self._settled:
            results, settled = self._results, self._settled
            self._results, self._settled = [], []
            started = self.contact.now()
            try:
                self.bus.publish_batch(results)
            except ConnectionLost:  # send them again on the next connection
                self._results[:0], self._settled[:0] = results, settled
                raise
            except MessagingError as exc:
                if not self._refused:  # a memory alarm refuses every try: say it once
                    log.warning(
                        "worker %s: the broker refused results (%s); keeping them and"
                        " trying again until it takes them",
                        self.name,
                        exc,
                    )
                self._refused = True
                self._results[:0], self._settled[:0] = results, settled
                if self.bus.blocked:
                    # It speaks to us (a resource alarm): in touch, and the manager calls
                    # no node down meanwhile.
                    self.contact.touch(started)
                return
            except BaseException:  # the connection is gone: send them again on the next one
                self._results[:0], self._settled[:0] = results, settled
                raise
            if self._refused:
                log.warning("worker %s: the broker takes results again", self.name)
                self._refused = False
            if any(r.routing_key == self._beat_key for r in results):
                self.contact.touch(started)
            self.bus.ack_batch(settled)

    def _background(self, job: Callable[[], None], pool: ThreadPoolExecutor | None = None) -> None:
        """Run an engine call in the pool (or the one given); a failure it did not answer
        is logged."""

        def logged() -> None:
            try:
                job()
            except Exception:
                log.exception("worker %s: an engine call failed", self.name)

        (pool or self.pool).submit(logged)

    def _settle(self, delivery: Delivery) -> None:
        """On the bus thread: ack a dispatch once the results queued before it are confirmed."""
        self._settled.append(delivery)

    def _publish(self, key: Key, report: Report) -> None:
        """On the bus thread: queue an update; `flush` publishes it.

        A report the manager would not accept (more host ports than an update carries,
        from an engine or a manager that checked less) is sent as the attempt's failure
        instead: raising here would leave its dispatch redelivered for ever, and the task
        placed for ever. The manager then stops the container."""
        at = utcnow()
        try:
            update = TaskUpdate(
                node=self.name,
                task_id=key[0],
                attempt=key[1],
                state=report.state,
                at=at,
                container_id=report.container_id,
                host_ports=report.host_ports,
                exit_code=report.exit_code,
                error=report.error,
                health=report.health,
                last_check=report.last_check,
                disconnected=report.disconnected,
                image_problem=report.image_problem,
            )
        except ValidationError as exc:
            why = f"the worker cannot report this attempt: {describe(exc)}"
            log.error("task %s: attempt %d: %s", key[0], key[1], why)
            update = TaskUpdate(
                node=self.name,
                task_id=key[0],
                attempt=key[1],
                state=TaskState.FAILED,
                at=at,
                error=why,
            )
        self._results.append(self._result("update", encode(update)))
        if report.exit_code is not None and report.container_id is not None:
            # exited by itself: its container is there to read, after the update is queued
            code = report.exit_code
            self._background(lambda: self.output.exited(key, code))

    def _send_output(self, kept: KeptOutput) -> None:
        """From an engine thread: queue an ended attempt's output behind what is queued."""
        body = encode(kept)
        self.bus.call_threadsafe(lambda: self._results.append(self._result("output", body)))

    def _result(self, kind: str, body: bytes) -> Outbound:
        return self.bus.message(
            topology.RESULTS,
            topology.result_key(kind, self.name),
            body,
            user_id=self._user,  # validated by the broker: the manager knows who sent it
        )


def orphan_in_the_way(orphan: ContainerInfo, node: str) -> str:
    """Why an attempt is not started beside (or over) an orphan container of its task."""
    return (
        f"container {orphan.container_id[:12]} of this task (attempt {orphan.attempt}) runs on"
        f" {node} as an orphan, which kube never stops, removes or takes over to start"
        " another attempt: adopt it or remove it (kube ps --orphans; kube orphans adopt or"
        " remove), or run the task under another id"
    )


def orphan_list(strays: Sequence[Stray]) -> tuple[Orphan, ...]:
    """The strays as a heartbeat lists them: as many as MAX_ORPHAN_BYTES holds."""
    listed: list[Orphan] = []
    size = 0
    for stray in strays[:MAX_ORPHANS_LISTED]:
        try:
            orphan = orphan_of(stray)
        except ValidationError as exc:  # another kube's labels, beyond what ours allow
            log.warning("container %s: not listed as an orphan: %s", stray.name, describe(exc))
            continue
        size += len(encode(orphan))
        if size > MAX_ORPHAN_BYTES:
            break
        listed.append(orphan)
    return tuple(listed)


def orphan_of(stray: Stray) -> Orphan:
    """A stray container as a heartbeat lists it."""
    return Orphan(
        task_id=stray.task_id,
        attempt=stray.attempt,
        container_id=stray.container_id,
        name=stray.name,
        image=stray.image,
        cluster=stray.cluster,
        since=stray.since,
        host_ports={k: v for k, v in stray.host_ports.items()},
        spec=stray.spec,
        unrecoverable=stray.unrecoverable,
    )
