"""The Runtime on a Docker engine, through the docker SDK (with docker_exec.py for `kube
exec`, the only modules that import it)."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

import docker
import docker.errors
import docker.utils
import requests.exceptions
from docker.types import LogConfig
from docker.types import Mount as DockerMount

from shared.errors import EngineUnavailable, ImageNotFound, NoSuchContainer, RuntimeFailure
from shared.images import ImageProblem
from shared.sessions import LogsParams
from shared.specs import HealthCheck, NetworkMode, PullPolicy, TaskSpec
from shared.volumes import engine_volume
from worker.files import FileMount
from worker.mounts import changed_sources, resolve_allowed, resolve_mounts
from worker.policy import PolicyRefused, WorkerPolicy
from worker.runtime.base import (
    ATTEMPT_LABEL,
    CLUSTER_LABEL,
    HEALTH_LABEL,
    MANAGED_LABEL,
    NODE_LABEL,
    STOP_AFTER_LABEL,
    TASK_LABEL,
    VOLUME_LABEL,
    ContainerExit,
    ContainerInfo,
    ContainerStatus,
    ExecOptions,
    Stray,
    belongs,
    container_name,
    foreign,
    former,
    other_cluster,
)
from worker.runtime.docker_exec import DockerExecSession
from worker.runtime.docker_logs import DockerLogFollow, log_params
from worker.runtime.pull_errors import classify
from worker.runtime.recovery import recovered_spec

log = logging.getLogger(__name__)

OOM_ERROR = "out of memory (OOMKilled)"

# The docker SDK ships no types: its containers and clients are Any to mypy.
Container = Any

_STATUSES = {
    "created": ContainerStatus.CREATED,
    "running": ContainerStatus.RUNNING,
    "paused": ContainerStatus.RUNNING,
    "restarting": ContainerStatus.RUNNING,
    "removing": ContainerStatus.EXITED,
    "exited": ContainerStatus.EXITED,
    "dead": ContainerStatus.EXITED,
}
# Only a container never started is started: an exited one is a finished attempt, and a
# redelivered dispatch must report its end, not run it a second time.
_STARTABLE = frozenset({"created"})
_CREATE_RACE_SECONDS = 10.0  # how long a concurrent create of the same name may take
_SIGKILL_EXIT = 137  # 128 + SIGKILL: the only exit code an OOM kill produces


def _translate(exc: Exception, doing: str, image: str | None = None) -> RuntimeFailure:
    """kube's error for a docker SDK or transport error met while `doing` something."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation or str(exc)
        # With an image in hand, every engine refusal (404, or a 500 from the registry)
        # means the image cannot be had.
        if image is not None:
            problem = classify(exc.status_code, str(explanation))
            return ImageNotFound(f"{doing}: image {image!r}: {explanation}", problem, explanation)
        if isinstance(exc, docker.errors.ImageNotFound):
            return ImageNotFound(f"{doing}: {explanation}")
        return RuntimeFailure(f"{doing}: {explanation}")
    # from_env wraps the refused connection of its version probe in a bare DockerException.
    if isinstance(exc, requests.exceptions.RequestException) or isinstance(
        exc.__cause__, requests.exceptions.RequestException
    ):
        return EngineUnavailable(f"{doing}: the Docker engine does not answer: {exc}")
    return RuntimeFailure(f"{doing}: {exc}")


@contextlib.contextmanager
def _engine(doing: str, image: str | None = None) -> Iterator[None]:
    """Run a block of docker calls, raising kube's errors in place of the SDK's."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _translate(exc, doing, image) from exc


def _host_ports(ports: dict[str, list[dict[str, str]] | None]) -> dict[str, int]:
    """Published TCP ports as {"8080": 32768}, preferring the IPv4 binding."""
    published: dict[str, int] = {}
    for key, bindings in ports.items():
        port, _, protocol = key.partition("/")
        if protocol != "tcp" or not bindings:
            continue
        ipv4 = [b for b in bindings if ":" not in b.get("HostIp", "")]
        published[port] = int((ipv4 or bindings)[0]["HostPort"])
    return published


def _info(container: Container) -> ContainerInfo:
    """What kube needs to know of an inspected container."""
    attrs = container.attrs
    state = attrs["State"]
    status = _STATUSES.get(str(state["Status"]), ContainerStatus.EXITED)
    labels = attrs["Config"]["Labels"] or {}
    return ContainerInfo(
        task_id=str(labels[TASK_LABEL]),
        attempt=int(labels[ATTEMPT_LABEL]),
        container_id=str(attrs["Id"]),
        status=status,
        host_ports=_host_ports(attrs["NetworkSettings"]["Ports"] or {}),
        exit_code=int(state["ExitCode"]) if status is ContainerStatus.EXITED else None,
        error=OOM_ERROR if state.get("OOMKilled") else (str(state.get("Error") or "") or None),
        health_check=(
            HealthCheck.model_validate_json(labels[HEALTH_LABEL])
            if HEALTH_LABEL in labels
            else None
        ),
        stop_after=float(labels[STOP_AFTER_LABEL]) if STOP_AFTER_LABEL in labels else None,
    )


def _timestamp(text: str) -> datetime | None:
    """A time as the engine writes it (RFC 3339, nanoseconds), or None."""
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None


LOG_DRIVER = "local"
"""The engine's log driver for every task container: it keeps output bytes exactly."""


def _create_args(
    spec: TaskSpec, volumes: Mapping[str, str], files: Sequence[FileMount] = ()
) -> dict[str, Any]:
    """Engine create arguments for a spec, its volumes' engine names in `volumes` (by their
    names in kube); disk is accounted by the scheduler, not enforced."""
    args: dict[str, Any] = {
        "command": list(spec.command) or None,
        "environment": dict(spec.env),
        "ports": {f"{m.container}/tcp": m.host for m in spec.published()},
        "detach": True,
        # the `local` log driver keeps the bytes a task wrote (json-file replaces those
        # that are not UTF-8), compressed and rotated (docs/wire-contract.md)
        "log_config": LogConfig(type=LOG_DRIVER),
    }
    if spec.entrypoint is not None:
        args["entrypoint"] = list(spec.entrypoint)
    if spec.cpu > 0:
        args["nano_cpus"] = int(spec.cpu * 1e9)
    if spec.memory > 0:
        args["mem_limit"] = spec.memory
    # Options below pass the worker's security policy first (worker/policy.py).
    if spec.privileged:
        args["privileged"] = True
    if spec.network_mode == NetworkMode.HOST:
        args["network_mode"] = "host"
        args.pop("ports")  # the host network publishes nothing: the ports are the host's
    if spec.pid_mode:
        args["pid_mode"] = spec.pid_mode
    if spec.mounts:
        args["mounts"] = [
            DockerMount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts
        ]
    if files:  # secrets and configs, the worker's own files: never the policy's to refuse
        args.setdefault("mounts", []).extend(
            DockerMount(f.target, f.source, type="bind", read_only=True) for f in files
        )
    if spec.volumes:
        args.setdefault("mounts", []).extend(
            DockerMount(v.target, volumes[v.name], type="volume", read_only=v.read_only)
            for v in spec.volumes
        )
    if spec.cap_add:
        args["cap_add"] = list(spec.cap_add)
    if spec.devices:
        args["devices"] = [f"{device}:{device}:rwm" for device in spec.devices]
    return args


class DockerRuntime:
    """Runs a node's task containers on the Docker engine that DOCKER_HOST names.

    The worker checks a spec against its policy before it calls start(); the checks that
    need the host (mount sources resolved, pulls from local registries) are made here,
    with the same policy, as late as they can be.
    """

    def __init__(
        self,
        node: str,
        client: docker.DockerClient | None = None,
        max_pool_size: int = 16,
        policy: WorkerPolicy | None = None,
    ) -> None:
        self.node = node
        self.cluster: str | None = None  # set by join(), before anything is listed
        self.adopted: set[str] = set()  # container ids counted as this cluster's (adopt)
        self.formers: set[str] = set()  # the clusters this worker was in before (join)
        self._specs: dict[str, TaskSpec | str] = {}  # strays' specs read back, by container id
        self.policy = resolve_allowed(WorkerPolicy() if policy is None else policy)
        if client is None:
            with _engine("connect to the Docker engine"):
                client = docker.from_env(max_pool_size=max_pool_size)
        self._client = client

    def ping(self) -> bool:
        """True when the engine answers."""
        try:
            return bool(self._client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def join(self, cluster: str) -> None:
        """Belong to this cluster from now on (see Runtime.join)."""
        if self.cluster is not None and self.cluster != cluster:
            self.formers.add(self.cluster)
        self.cluster = cluster

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        """Pull per the spec's policy, create and start; idempotent per (task, attempt)."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"start {name}"):
            container = self._find(name)
            if container is None:
                self._ensure_image(spec.image, spec.pull_policy)
                volumes = self._ensure_volumes(spec)
                # Resolved after the pull, right before create and start: see worker/mounts.py.
                resolved = resolve_mounts(spec, self.policy, self.node)
                container = self._create(name, task_id, attempt, resolved, volumes, files)
            if container.status in _STARTABLE:
                self._recheck_binds(container, {file.source for file in files})
                container.start()
            container.reload()
            return _info(container)

    def stop(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """Stop (SIGTERM, then SIGKILL after timeout), keeping the container; fine if
        stopped or gone already."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"stop {name}"):
            container = self._find(name)
            if container is None:
                return
            try:
                container.stop(timeout=math.ceil(timeout))
            except docker.errors.NotFound:
                return  # removed by someone else meanwhile

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """Stop (SIGTERM, then SIGKILL after timeout) and remove; fine if already gone."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"remove {name}"):
            container = self._find(name)
            if container is None:
                return
            try:
                container.stop(timeout=math.ceil(timeout))
                container.remove(force=True)
            except docker.errors.NotFound:
                return  # removed by someone else meanwhile
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a removal is already in progress
                    raise

    def logs(
        self, task_id: str, attempt: int, tail: int | None = None, limit: int | None = None
    ) -> bytes:
        """The container's stdout and stderr, interleaved, the last `tail` lines if given.

        Read as a stream and cut as it comes, so a container that printed gigabytes costs
        the worker about twice `limit` in memory, not the whole log.
        """
        name = container_name(self.node, task_id, attempt)
        with _engine(f"read the logs of {name}"):
            container = self._require(name)
            chunks = container.logs(
                stdout=True,
                stderr=True,
                stream=True,
                follow=False,  # a stream follows by default: it would wait for more
                tail="all" if tail is None else tail,
            )
            return _last(chunks, limit)

    def output_end(self, task_id: str, attempt: int, limit: int) -> tuple[bytes, bytes]:
        """The last `limit` bytes of stdout and of stderr, each read as the stream above.

        Only the last `limit` lines are asked for: they hold the last `limit` bytes whatever
        the lines' length, and the engine reads them from the end of its log, so a
        container that printed gigabytes is not read through at its end."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"read the output of {name}"):
            container = self._require(name)
            out = container.logs(stdout=True, stderr=False, stream=True, follow=False, tail=limit)
            err = container.logs(stdout=False, stderr=True, stream=True, follow=False, tail=limit)
            return _last(out, limit), _last(err, limit)

    def follow_logs(self, task_id: str, attempt: int, params: LogsParams) -> DockerLogFollow:
        """The container's output line by line, stdout and stderr apart (see Runtime)."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"follow the logs of {name}"):
            container = self._require(name)
            tty = bool((container.attrs.get("Config") or {}).get("Tty"))
            query = log_params(params)
            return DockerLogFollow(self._client.api, container.id, tty, query)

    def address(self, task_id: str, attempt: int) -> str:
        """Where the container's ports answer from this host: its bridge IP, or loopback."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"inspect {name}"):
            container = self._require(name)
            settings = container.attrs.get("NetworkSettings") or {}
            address = settings.get("IPAddress") or next(
                (
                    n.get("IPAddress")
                    for n in (settings.get("Networks") or {}).values()
                    if n.get("IPAddress")
                ),
                None,
            )
            return str(address or "127.0.0.1")

    def exec(self, task_id: str, attempt: int, command: Sequence[str]) -> int:
        """Run a command inside the container and return its exit code."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"exec in {name}"):
            container = self._require(name)
            # With output off the SDK may return before the exec ends, and its exit code is
            # None (docker-py #2450): take the output and drop it.
            result = container.exec_run(list(command), stdout=True, stderr=True)
            return int(result.exit_code)

    def open_exec(self, task_id: str, attempt: int, options: ExecOptions) -> DockerExecSession:
        """Start a command in the running container and attach to it (`kube exec`)."""
        name = container_name(self.node, task_id, attempt)
        with _engine(f"exec in {name}"):
            container = self._require(name)
            if container.status != "running":
                raise RuntimeFailure(f"container {name} is not running ({container.status})")
        return DockerExecSession(self._client.api, container.id, name, options)

    def list(self, task_id: str | None = None) -> list[ContainerInfo]:
        """Every container this node owns (of one task, if given), running or not."""
        labels = [f"{NODE_LABEL}={self.node}"]
        if task_id is not None:
            labels.append(f"{TASK_LABEL}={task_id}")
        with _engine(f"list the containers of node {self.node}"):
            containers = self._client.containers.list(
                all=True,
                filters={"label": labels},
                # A container removed between the engine's list and its inspect is skipped
                # rather than failing the whole call with NotFound.
                ignore_removed=True,
            )
        infos: list[ContainerInfo] = []
        for container in containers:
            if not self._ours(container.labels, container.id):
                continue  # another cluster's node of the same name, on this engine
            try:
                infos.append(_info(container))
            except (KeyError, ValueError):
                log.warning(
                    "node %s: container %s lacks valid kube labels", self.node, container.id
                )
        return infos

    def watch_exits(
        self, on_exit: Callable[[ContainerExit], None], on_error: Callable[[Exception], None]
    ) -> DockerExitWatch:
        """Call on_exit (from a background thread) for each container of this node that
        stops running, from the engine's event stream; on_error once if the stream breaks."""
        return DockerExitWatch(
            self._client, self.node, on_exit, on_error, self.cluster, self.adopted
        )

    def _ours(self, labels: Mapping[str, str], container_id: str) -> bool:
        return belongs(labels, self.cluster) or container_id in self.adopted

    def _is_stray(self, labels: Mapping[str, str], container_id: str) -> bool:
        """A former cluster's container, not adopted (see `former`)."""
        return not self._ours(labels, container_id) and former(
            labels.get(CLUSTER_LABEL), self.cluster, self.formers
        )

    def adopt(self, container_id: str) -> None:
        """Count this container as this cluster's from now on (see Runtime.adopt)."""
        self.adopted.add(container_id)

    def strays(
        self, disowned: Collection[tuple[str, int]], limit: int
    ) -> tuple[Sequence[Stray], int]:
        """The running containers of this node that are no task of its cluster (see Runtime):
        one cheap list; only the first `limit` are inspected, and their specs read once."""
        with _engine(f"list the containers of node {self.node}"):
            containers = self._client.containers.list(
                filters={"label": [f"{NODE_LABEL}={self.node}"], "status": "running"},
                sparse=True,  # labels without an inspect per container
            )
        found: builtins.list[tuple[str, str, int]] = []
        for container in containers:
            labels = container.attrs.get("Labels") or {}
            try:
                key = (str(labels[TASK_LABEL]), int(labels[ATTEMPT_LABEL]))
            except (KeyError, ValueError):
                continue
            if not self._ours(labels, container.id) or key in disowned:
                found.append((str(container.id), *key))
        found.sort()
        described = []
        with _engine(f"inspect the orphan containers of node {self.node}"):
            for container_id, _, _ in found[:limit]:
                try:
                    described.append(self._stray(self._client.containers.get(container_id)))
                except docker.errors.NotFound:
                    continue  # removed meanwhile
        kept = {c for c, _, _ in found[:limit]}
        self._specs = {c: spec for c, spec in self._specs.items() if c in kept}
        return described, len(found)

    def _stray(self, container: Container) -> Stray:
        attrs = container.attrs
        labels = attrs["Config"]["Labels"] or {}
        spec = self._specs.get(container.id)
        if spec is None:
            spec = self._specs[container.id] = recovered_spec(attrs, self._image_env(attrs))
        started = str(attrs["State"].get("StartedAt") or "")
        if not self._ours(labels, container.id) and not self._is_stray(labels, container.id):
            spec = foreign(labels[CLUSTER_LABEL])  # another cluster's, maybe live
        return Stray(
            task_id=str(labels[TASK_LABEL]),
            attempt=int(labels[ATTEMPT_LABEL]),
            container_id=str(attrs["Id"]),
            name=str(attrs.get("Name", "")).lstrip("/"),
            image=str(attrs["Config"]["Image"]),
            cluster=labels.get(CLUSTER_LABEL),
            since=_timestamp(started),
            host_ports=_host_ports(attrs["NetworkSettings"]["Ports"] or {}),
            spec=spec if isinstance(spec, TaskSpec) else None,
            unrecoverable=spec if isinstance(spec, str) else None,
        )

    def _image_env(self, attrs: Mapping[str, Any]) -> builtins.list[str]:
        """The environment the container's image sets (not the task's), if it is present."""
        try:
            image = self._client.images.get(attrs["Image"])
        except docker.errors.DockerException:
            return []
        return list(image.attrs.get("Config", {}).get("Env") or [])

    def remove_stray(self, container_id: str, disowned: Collection[tuple[str, int]]) -> None:
        """Stop and remove a stray container (see Runtime)."""
        with _engine(f"remove orphan container {container_id[:12]}"):
            try:
                container = self._client.containers.get(container_id)
            except docker.errors.NotFound:
                return  # gone already
            labels = container.labels
            key = (labels.get(TASK_LABEL), labels.get(ATTEMPT_LABEL))
            stray = self._is_stray(labels, container.id) or any(
                (str(task_id), str(attempt)) == key for task_id, attempt in disowned
            )
            if labels.get(NODE_LABEL) != self.node or not stray:
                raise RuntimeFailure(
                    f"container {container_id[:12]} is no orphan of node {self.node}"
                )
            with contextlib.suppress(docker.errors.NotFound):
                container.stop(timeout=10)
                container.remove(force=True)

    # -- volumes (issue 17) ----------------------------------------------------------------

    def _volume_labels(self, name: str) -> dict[str, str]:
        labels = {MANAGED_LABEL: "true", NODE_LABEL: self.node, VOLUME_LABEL: name}
        if self.cluster is not None:
            labels[CLUSTER_LABEL] = self.cluster
        return labels

    def _volume_name(self, name: str) -> str:
        """The engine's name of this node's volume: with the cluster's id in it, so a new
        cluster on this engine never mounts an old one's data; or, made before names held
        the id, the volume named without it, if it is labelled with this very cluster."""
        named = engine_volume(self.node, name, self.cluster)
        legacy = engine_volume(self.node, name)
        if named == legacy or self._volume_labels_of(named) is not None:
            return named
        labels = self._volume_labels_of(legacy)
        if labels is not None and labels.get(CLUSTER_LABEL) == self.cluster:
            return legacy
        return named

    def _volume_labels_of(self, engine_name: str) -> dict[str, str] | None:
        """The labels of the engine's volume of that name, None when there is none."""
        try:
            volume = self._client.volumes.get(engine_name)
        except docker.errors.NotFound:
            return None
        return dict(volume.attrs.get("Labels") or {})

    def _ensure_volumes(self, spec: TaskSpec) -> dict[str, str]:
        """Create the spec's volumes this node's engine lacks, labelled as kube's; their
        engine names, by their names in kube."""
        names: dict[str, str] = {}
        for volume in spec.volumes:
            engine_name = names[volume.name] = self._volume_name(volume.name)
            if self._volume_labels_of(engine_name) is None:
                log.info("node %s: creating volume %s (%s)", self.node, volume.name, engine_name)
                self._client.volumes.create(
                    name=engine_name, driver="local", labels=self._volume_labels(volume.name)
                )
        return names

    def volumes(self) -> builtins.list[str]:
        """The names of this node's kube volumes on the engine (see Runtime.volumes)."""
        with _engine("list volumes"):
            found = self._client.volumes.list(filters={"label": f"{NODE_LABEL}={self.node}"})
        return sorted(
            v.attrs["Labels"][VOLUME_LABEL]
            for v in found
            if VOLUME_LABEL in (v.attrs.get("Labels") or {})
            and belongs(v.attrs["Labels"], self.cluster)
        )

    def remove_volume(self, name: str) -> bool:
        """Remove one of this node's volumes (see Runtime.remove_volume)."""
        with _engine(f"remove volume {name}"):
            engine_name = self._volume_name(name)
            try:
                volume = self._client.volumes.get(engine_name)
            except docker.errors.NotFound:
                return False
            # The manager removes a volume only when no task that has not ended names it:
            # the containers left of ended attempts go with it (the engine would refuse).
            users = self._client.containers.list(all=True, filters={"volume": engine_name})
            running = [c.name for c in users if c.status in ("running", "restarting", "paused")]
            if running:
                raise RuntimeFailure(f"volume {name} is in use by container {running[0]}")
            for container in users:
                container.remove(force=True)
            volume.remove()
        return True

    def _find(self, name: str) -> Container | None:
        """The named container, or None when the engine has none; RuntimeFailure when it
        is another cluster's (the same node name and task id in both), never touched."""
        try:
            container = self._client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if not self._ours(container.labels, container.id):
            raise RuntimeFailure(other_cluster(name, container.labels.get(CLUSTER_LABEL)))
        return container

    def _require(self, name: str) -> Container:
        """The named container, or RuntimeFailure when the engine has none."""
        container = self._find(name)
        if container is None:
            raise NoSuchContainer(f"no container {name} on node {self.node}")
        return container

    def _recheck_binds(self, container: Container, own: Collection[str] = ()) -> None:
        """Remove the container and raise PolicyRefused if a bind source changed since it was
        resolved (or, from an older worker, was never resolved): see worker/mounts.py. The
        worker's `own` files (secrets, configs: worker/files.py) are not the spec's."""
        sources = [
            str(m["Source"])
            for m in container.attrs.get("Mounts") or []
            if m.get("Type") == "bind" and m.get("Source") not in own
        ]
        refused = changed_sources(sources, self.policy, self.node)
        if refused:
            container.remove(force=True)
            raise PolicyRefused(self.node, refused)

    def has_image(self, image: str) -> bool:
        """True when the engine holds the image locally."""
        with _engine("inspect", image=image):
            try:
                self._client.images.get(image)
            except docker.errors.ImageNotFound:
                return False
        return True

    def _ensure_image(self, image: str, policy: PullPolicy) -> None:
        """Make the image local as the pull policy allows, or raise ImageNotFound. A
        missing image whose registry is on a local address the node's policy refuses
        (`localhost/nope:1`) cannot be had: ImageNotFound with a problem (the task fails at
        once, docs/local-cluster.md); with pull policy `always`, the pull itself is a
        policy refusal."""
        if policy is PullPolicy.ALWAYS:
            self._pull(image)
        elif not self.has_image(image):
            if policy is PullPolicy.NEVER:
                raise ImageNotFound(
                    f"image {image!r} is not present on node {self.node}"
                    " and the pull policy is 'never'"
                )
            refused = self.policy.pull_violation(image)
            if refused is not None:  # not here, and its registry may not be asked: for good
                raise ImageNotFound(
                    f"image {image!r}: {refused}", ImageProblem.NO_REGISTRY, refused
                )
            self._pull(image)

    def _pull(self, image: str) -> None:
        """Pull an image, raising ImageNotFound with the registry's reason on failure."""
        refused = self.policy.pull_violation(image)
        if refused is not None:
            raise PolicyRefused(self.node, [refused])
        repository, tag = docker.utils.parse_repository_tag(image)
        log.info("node %s: pulling %s", self.node, image)
        with _engine("pull", image=image):
            # The model layer's images.pull() drains the progress stream and drops any
            # error it carries; read it here to keep the registry's reason.
            for line in self._client.api.pull(
                repository, tag=tag or "latest", stream=True, decode=True
            ):
                if "error" in line:
                    said = str(line["error"])
                    problem = classify(None, said)
                    raise ImageNotFound(f"pull: image {image!r}: {said}", problem, said)

    def _create(
        self,
        name: str,
        task_id: str,
        attempt: int,
        spec: TaskSpec,
        volumes: Mapping[str, str],
        files: Sequence[FileMount],
    ) -> Container:
        """Create the attempt's container, or find the one a concurrent start created."""
        labels = {
            **spec.labels,
            TASK_LABEL: task_id,
            ATTEMPT_LABEL: str(attempt),
            NODE_LABEL: self.node,
        }
        if self.cluster is not None:
            labels[CLUSTER_LABEL] = self.cluster
        if spec.health_check is not None:
            # Kept on the container so a restarted worker resumes the checks it finds.
            labels[HEALTH_LABEL] = spec.health_check.model_dump_json()
        if spec.on_disconnect is not None:
            # Kept on the container so a worker restarted while cut off still stops it.
            labels[STOP_AFTER_LABEL] = repr(spec.on_disconnect.stop_after_seconds)
        deadline = time.monotonic() + _CREATE_RACE_SECONDS
        while True:
            try:
                return self._client.containers.create(
                    spec.image, name=name, labels=labels, **_create_args(spec, volumes, files)
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: the name is taken, by a concurrent start
                    raise
                conflict = exc
            # The engine reserves the name before the container can be inspected: wait for
            # the other create to finish (or fail, freeing the name for another try).
            container = self._find(name)
            if container is not None:
                return container
            if time.monotonic() > deadline:
                raise conflict
            time.sleep(0.05)


class DockerExitWatch:
    """A thread turning the engine's `die` events for one node into ContainerExit calls."""

    def __init__(
        self,
        client: Any,
        node: str,
        on_exit: Callable[[ContainerExit], None],
        on_error: Callable[[Exception], None],
        cluster: str | None = None,
        adopted: AbstractSet[str] = frozenset(),
    ) -> None:
        self._client = client
        self._node = node
        self._cluster = cluster
        self._adopted = adopted  # the runtime's, which grows as containers are adopted
        self._on_exit = on_exit
        self._on_error = on_error
        self._closed = threading.Event()
        # Subscribe before returning, so no exit after watch_exits() is missed.
        with _engine(f"watch the exits of node {node}"):
            self._events = client.events(
                decode=True,
                filters={"type": "container", "event": "die", "label": f"{NODE_LABEL}={node}"},
            )
        self._thread = threading.Thread(target=self._run, name=f"kube-exits-{node}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the event stream and wait for the thread (unless called from a callback)."""
        self._closed.set()
        # CancellableStream.close() digs the socket out of urllib3 and can trip over a
        # response the engine already closed.
        with contextlib.suppress(OSError, AttributeError):
            self._events.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        error: Exception
        try:
            for event in self._events:
                self._deliver(event)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            error = _translate(exc, f"watch the exits of node {self._node}")
        except Exception as exc:  # the thread's last stop: the worker must hear of it
            error = RuntimeFailure(f"watch the exits of node {self._node}: {exc!r}")
        else:
            # The SDK turns a dropped connection into a plain end of the stream.
            error = EngineUnavailable(f"the Docker event stream of node {self._node} ended")
        if not self._closed.is_set():
            self._on_error(error)

    def _deliver(self, event: dict[str, Any]) -> None:
        """Call on_exit for one `die` event; a failing callback is logged, not fatal."""
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if not belongs(attributes, self._cluster) and actor.get("ID") not in self._adopted:
            return  # another cluster's node of the same name, on this engine
        try:
            stopped = ContainerExit(
                task_id=str(attributes[TASK_LABEL]),
                attempt=int(attributes[ATTEMPT_LABEL]),
                container_id=str(actor["ID"]),
                exit_code=int(attributes["exitCode"]),
            )
        except (KeyError, ValueError):
            log.warning("node %s: ignored a malformed die event: %r", self._node, event)
            return
        if stopped.exit_code == _SIGKILL_EXIT and self._oom_killed(stopped.container_id):
            stopped = dataclasses.replace(stopped, error=OOM_ERROR, oom_killed=True)
        try:
            self._on_exit(stopped)
        except Exception:
            log.exception(
                "node %s: on_exit failed for task %s attempt %s",
                self._node,
                stopped.task_id,
                stopped.attempt,
            )

    def _oom_killed(self, container_id: str) -> bool:
        """Whether the kernel's OOM killer ended the container; False if it is gone."""
        try:
            state = self._client.api.inspect_container(container_id)["State"]
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        return bool(state.get("OOMKilled"))


def _last(chunks: Iterable[bytes], limit: int | None) -> bytes:
    """The last `limit` bytes of a stream of chunks (all without a limit), holding about
    twice that at most."""
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if limit is not None and len(data) > 2 * limit:
            del data[:-limit]
    return bytes(data if limit is None else data[-limit:])
