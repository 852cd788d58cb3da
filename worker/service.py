"""The worker process: runs the containers its node queue asks for and reports on them.

Threads: the bus thread owns the AMQP connection and never waits on the engine; engine
calls run in a bounded pool (`WorkerConfig.concurrency` containers start at once), and
the engine's event stream has a thread of its own. Both hand their results back to the
bus thread with `Bus.call_threadsafe`, where updates and heartbeats are queued in order;
once the deliveries and callbacks that had arrived are handled, the queue is published
with confirms as one stream and only then are the dispatches it reports on acked. A
dispatch is acked once its container started, never at container exit: tasks may run
for days, longer than RabbitMQ's consumer timeout.

Stopping the worker leaves its containers running; a worker that starts again reports
what it finds (reconciliation), so nothing is orphaned or started twice.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import TypeAdapter

from shared import topology
from shared.bus import Bus, Delivery, MessageBus, Outbound
from shared.codec import decode, encode
from shared.errors import (
    ConnectionLost,
    DecodeError,
    EngineUnavailable,
    MessagingError,
    RuntimeFailure,
)
from shared.messages import (
    Dispatch,
    Heartbeat,
    HeldTask,
    LogsReply,
    LogsRequest,
    RunTask,
    StopTask,
    TaskUpdate,
)
from shared.models import Health
from shared.settings import Settings
from shared.specs import HealthCheck
from shared.states import TaskState
from worker.health import HealthMonitor
from worker.logs import logs_reply
from worker.policy import WorkerPolicy
from worker.runtime.base import ContainerExit, ContainerInfo, ContainerStatus, ExitWatch, Runtime
from worker.stats import Capacity, detect_capacity, measure

log = logging.getLogger(__name__)

DISPATCH: TypeAdapter[RunTask | StopTask | LogsRequest] = TypeAdapter(Dispatch)

Key = tuple[str, int]  # (task id, attempt)
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs; built by the CLI from flags and the environment."""

    name: str = field(default_factory=socket.gethostname)
    labels: dict[str, str] = field(default_factory=dict)
    capacity: Capacity | None = None  # None: detect the host's
    heartbeat_interval: float = 2.0
    concurrency: int = 8  # containers started at once; the engine's own limit is near this
    policy: WorkerPolicy = field(default_factory=WorkerPolicy)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.runtime = runtime
        self.bus: MessageBus = bus or Bus(
            settings, f"kube-worker-{config.name}", prefetch=config.concurrency
        )
        self._user = self.bus.user
        self.capacity = config.capacity or detect_capacity()
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="engine")
        self._lock = threading.Lock()
        self._running: dict[Key, str] = {}  # containers believed to run: key -> container id
        self._starting: set[Key] = set()
        self._deferred_exits: dict[Key, ContainerExit] = {}
        self._stopping: set[Key] = set()
        self._watch: ExitWatch | None = None
        self._engine_ok = True
        self._inventory = False  # true once the engine's containers have been listed
        self._results: list[Outbound] = []  # updates and heartbeats, in order (bus thread)
        self._settled: list[Delivery] = []  # dispatches to ack once those are confirmed
        self.health = HealthMonitor(runtime, self._on_health)

    # -- life cycle --------------------------------------------------------------------

    def setup(self) -> None:
        self.bus.declare(topology.worker_topology(self.name))
        self.bus.consume(topology.node_queue(self.name), self.on_dispatch)
        self.bus.every(self.config.heartbeat_interval, self.send_heartbeat)
        self.bus.on_connect(self.send_heartbeat)
        self.bus.on_connect(self.flush)
        self.bus.after_events(self.flush)
        self.pool.submit(self._watch_engine)

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
        watch = self._watch
        if watch is not None:
            watch.close()
        self.health.close()
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
        """Report every container this node holds, as the engine sees it now."""
        found = self.runtime.list()
        for info in found:
            key = (info.task_id, info.attempt)
            with self._lock:
                if info.status == ContainerStatus.RUNNING:
                    self._running[key] = info.container_id
                else:
                    self._running.pop(key, None)
            if info.status == ContainerStatus.RUNNING and info.health_check is not None:
                self.health.watch(key, info.health_check)
            if info.status != ContainerStatus.CREATED:
                self._send(self._update_from(info))
        with self._lock:
            running = {(i.task_id, i.attempt) for i in found if i.status == ContainerStatus.RUNNING}
            for gone in set(self._running) - running:
                del self._running[gone]  # died while the event stream was down
        self._inventory = True

    # -- dispatches --------------------------------------------------------------------

    def on_dispatch(self, delivery: Delivery) -> None:
        try:
            message = decode(DISPATCH, delivery.body)
        except DecodeError as exc:
            log.warning("worker %s: dead-lettering a bad dispatch: %s", self.name, exc.reason)
            self.bus.dead_letter(delivery, f"invalid dispatch: {exc.reason}")
            return
        if isinstance(message, RunTask):
            with self._lock:
                self._starting.add((message.task_id, message.attempt))
            self.pool.submit(self._start, message, delivery)
        elif isinstance(message, LogsRequest):
            self._logs(message, delivery)
        else:
            with self._lock:
                self._stopping.add((message.task_id, message.attempt))
            self.pool.submit(self._remove, message, delivery)

    def _start(self, message: RunTask, delivery: Delivery) -> None:
        key = (message.task_id, message.attempt)
        log.info("task %s: starting attempt %d (%s)", key[0], key[1], message.spec.image)
        refused = self.config.policy.violations(message.spec)
        if refused:
            reason = f"refused by the security policy of {self.name}: {'; '.join(refused)}"
            log.warning("task %s: %s", key[0], reason)
            update = self._update(key, TaskState.FAILED, error=reason)
        else:
            try:
                info = self._with_engine(lambda: self.runtime.start(key[0], key[1], message.spec))
                update = self._update_from(info)
            except RuntimeFailure as exc:
                log.warning("task %s: could not start: %s", key[0], exc)
                update = self._update(key, TaskState.FAILED, error=str(exc))
        check = message.spec.health_check
        self.bus.call_threadsafe(lambda: self._started(key, update, delivery, check))

    def _started(
        self, key: Key, update: TaskUpdate, delivery: Delivery, check: HealthCheck | None
    ) -> None:
        """On the bus thread: report the start, then any exit that overtook it, then ack."""
        if update.state == TaskState.RUNNING and check is not None:
            update = update.model_copy(update={"health": Health.STARTING})
        self._publish(update)
        with self._lock:
            self._starting.discard(key)
            if update.state == TaskState.RUNNING and update.container_id:
                self._running[key] = update.container_id
                if check is not None:
                    self.health.watch(key, check)
            overtaken = self._deferred_exits.pop(key, None)
        if overtaken is not None:
            self._exited(overtaken)
        self._settled.append(delivery)

    def _remove(self, message: StopTask, delivery: Delivery) -> None:
        key = (message.task_id, message.attempt)
        self.health.forget(key)
        try:
            self._with_engine(lambda: self.runtime.remove(key[0], key[1]))
            with self._lock:
                was_running = self._running.pop(key, None) is not None
            update = self._update(key, TaskState.COMPLETED) if was_running else None
            log.info("task %s: attempt %d stopped and removed", key[0], key[1])
        except RuntimeFailure as exc:
            log.warning("task %s: could not remove attempt %d: %s", key[0], key[1], exc)
            update = None

        def done() -> None:
            if update is not None:
                self._publish(update)
            self._settled.append(delivery)

        self.bus.call_threadsafe(done)

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

    # -- exits -------------------------------------------------------------------------

    def _on_exit(self, event: ContainerExit) -> None:
        """From the event thread: hand the exit to the bus thread."""
        self.bus.call_threadsafe(lambda: self._exited(event))

    def _exited(self, event: ContainerExit) -> None:
        key = (event.task_id, event.attempt)
        with self._lock:
            if key in self._stopping:
                return  # stopped on request: _remove reports it
            if key in self._starting:
                self._deferred_exits[key] = event
                return
            self._running.pop(key, None)
        self.health.forget(key)
        state = TaskState.COMPLETED if event.exit_code == 0 else TaskState.FAILED
        error = event.error or (f"exited with code {event.exit_code}" if event.exit_code else None)
        log.info("task %s: attempt %d exited with code %d", key[0], key[1], event.exit_code)
        self._publish(
            self._update(
                key,
                state,
                container_id=event.container_id,
                exit_code=event.exit_code,
                error=error,
            )
        )

    # -- health ------------------------------------------------------------------------

    def _on_health(self, key: Key, health: Health, detail: str) -> None:
        """From the health thread: report the change; an unhealthy container is removed."""
        if health == Health.UNHEALTHY:
            with self._lock:
                self._stopping.add(key)  # its die event is ours, not a crash
            self.pool.submit(self._remove_unhealthy, key, detail)
        update = self._update(key, TaskState.RUNNING, health=health, last_check=detail)
        self._send(update)

    def _remove_unhealthy(self, key: Key, detail: str) -> None:
        try:
            self._with_engine(lambda: self.runtime.remove(key[0], key[1]))
        except RuntimeFailure as exc:
            log.warning("task %s: could not remove unhealthy attempt %d: %s", key[0], key[1], exc)
        with self._lock:
            self._running.pop(key, None)
        update = self._update(
            key,
            TaskState.FAILED,
            error=f"unhealthy: {detail}",
            health=Health.UNHEALTHY,
            last_check=detail,
        )
        self._send(update)

    # -- logs --------------------------------------------------------------------------

    def _logs(self, request: LogsRequest, delivery: Delivery) -> None:
        """Answer on kube.results (the manager relays it); a request past its time is
        dropped, since whoever asked has given up."""
        if utcnow() > request.expires:
            log.info("task %s: dropping a logs request that expired", request.task_id)
            self._settled.append(delivery)
            return

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
        with self._lock:
            held = tuple(
                HeldTask(task_id=t, attempt=a, state=TaskState.RUNNING, container_id=c)
                for (t, a), c in self._running.items()
            )
        beat = Heartbeat(
            node=self.name,
            at=utcnow(),
            cpus=self.capacity.cpus,
            memory=self.capacity.memory,
            disk=self.capacity.disk,
            labels=self.config.labels,
            stats=measure(),
            engine_ok=self._engine_ok,
            inventory=self._inventory,
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
            try:
                self.bus.publish_batch(results)
            except ConnectionLost:  # send them again on the next connection
                self._results[:0], self._settled[:0] = results, settled
                raise
            except MessagingError:
                log.exception("worker %s: the broker refused results; trying again", self.name)
                self._results[:0], self._settled[:0] = results, settled
                return
            except BaseException:  # the connection is gone: send them again on the next one
                self._results[:0], self._settled[:0] = results, settled
                raise
            self.bus.ack_batch(settled)

    def _update(
        self,
        key: Key,
        state: TaskState,
        *,
        container_id: str | None = None,
        host_ports: dict[str, int] | None = None,
        exit_code: int | None = None,
        error: str | None = None,
        health: Health | None = None,
        last_check: str | None = None,
    ) -> TaskUpdate:
        return TaskUpdate(
            node=self.name,
            task_id=key[0],
            attempt=key[1],
            state=state,
            at=utcnow(),
            container_id=container_id,
            host_ports=host_ports or {},
            exit_code=exit_code,
            error=error,
            health=health,
            last_check=last_check,
        )

    def _update_from(self, info: ContainerInfo) -> TaskUpdate:
        key = (info.task_id, info.attempt)
        if info.status == ContainerStatus.EXITED:
            code = info.exit_code or 0
            state = TaskState.COMPLETED if code == 0 else TaskState.FAILED
            error = info.error or (f"exited with code {code}" if code else None)
            return self._update(
                key, state, container_id=info.container_id, exit_code=code, error=error
            )
        return self._update(
            key, TaskState.RUNNING, container_id=info.container_id, host_ports=info.host_ports
        )

    def _send(self, update: TaskUpdate) -> None:
        """From any thread: publish on the bus thread."""
        self.bus.call_threadsafe(lambda: self._publish(update))

    def _publish(self, update: TaskUpdate) -> None:
        """On the bus thread: queue an update; `flush` publishes it."""
        self._results.append(self._result("update", encode(update)))

    def _result(self, kind: str, body: bytes) -> Outbound:
        return self.bus.message(
            topology.RESULTS,
            topology.result_key(kind, self.name),
            body,
            user_id=self._user,  # validated by the broker: the manager knows who sent it
        )
