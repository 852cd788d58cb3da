"""A RabbitMQ to develop against: is one answering, and can the local Docker start one?

`kube up` uses this when no broker answers at KUBE_AMQP_URL. The container it starts is
of BROKER_IMAGE, named after the port it serves, labelled `kube.role=broker`, given the
URL's user, password and vhost (the official image creates them on first boot), and
removed when `kube up` ends unless `--keep`, or at once if `kube up` is stopped while
the broker boots.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import docker
import docker.errors
from docker.models.containers import Container

from shared.errors import KubeError, MessagingError
from shared.rpc import RpcChannel
from shared.settings import Settings, redact

BROKER_IMAGE = "rabbitmq:3.13-management"
"""The official image with the management UI; `deploy/compose.yaml` runs the same."""

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class LocalBrokerError(KubeError):
    """A local broker could not be started."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def of(cls, settings: Settings) -> BrokerAddress:
        """The address of the first broker: the one a started container serves."""
        return cls.of_url(settings.amqp_urls[0])

    @classmethod
    def of_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        default = 5671 if parts.scheme == "amqps" else 5672
        return cls(parts.hostname or "localhost", parts.port or default)

    @property
    def local(self) -> bool:
        """Only a broker on this machine can be replaced by a container started here."""
        return self.host in LOCAL_HOSTS


def listening(address: BrokerAddress, timeout: float = 1.0) -> bool:
    """Whether anything accepts TCP connections at the broker's address."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return True
    except OSError:
        return False


def check_broker(settings: Settings) -> None:
    """Log in once; raises MessagingError with the broker's reason (bad password, vhost)."""
    RpcChannel(settings, name="kube-up").close()


def docker_answers() -> bool:
    try:
        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except docker.errors.DockerException:
        return False


def container_name(port: int) -> str:
    return f"kube-rabbitmq-{port}"


def start_broker(settings: Settings, image: str = BROKER_IMAGE, timeout: float = 90.0) -> str:
    """Run a RabbitMQ container on the URL's port, wait until it serves; return its id."""
    address = BrokerAddress.of(settings)
    client = docker.from_env()
    try:
        _ensure_image(client, image)
        try:
            container = _run(client, image, address.port, _credentials(settings))
            _wait_until_serving(settings, container, timeout)
        except BaseException:  # also Ctrl-C while it is created or boots: leave no broker
            _remove_named(client, container_name(address.port))
            raise
        return str(container.id)
    finally:
        client.close()


def _remove_named(client: docker.DockerClient, name: str) -> None:
    for container in client.containers.list(all=True, filters={"name": f"^/{name}$"}):
        container.remove(force=True)


def remove_broker(container_id: str) -> None:
    client = docker.from_env()
    try:
        client.containers.get(container_id).remove(force=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def _ensure_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise LocalBrokerError(
            f"image {image} is not on this machine and could not be pulled ({exc}); "
            f"`docker pull {image}` (or `docker load` it) where a registry is reachable, "
            "or start RabbitMQ yourself and set KUBE_AMQP_URL"
        ) from exc


def _credentials(settings: Settings) -> dict[str, str]:
    """The official image creates this user and vhost on first boot (RABBITMQ_DEFAULT_*)."""
    parts = urlsplit(settings.amqp_urls[0])
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {
        "RABBITMQ_DEFAULT_USER": unquote(parts.username or "guest"),
        "RABBITMQ_DEFAULT_PASS": unquote(parts.password or "guest"),
        "RABBITMQ_DEFAULT_VHOST": vhost,
    }


def _run(client: docker.DockerClient, image: str, port: int, env: dict[str, str]) -> Container:
    name = container_name(port)
    try:
        try:
            existing = client.containers.get(name)
            existing.start()  # left by an earlier `kube up --keep`
            return existing
        except docker.errors.NotFound:
            pass
        return client.containers.run(
            image,
            detach=True,
            name=name,
            environment=env,
            ports={"5672/tcp": ("127.0.0.1", port)},
            labels={"kube.role": "broker"},
        )
    except docker.errors.DockerException as exc:
        raise LocalBrokerError(f"could not start a {image} container: {exc}") from exc


def _wait_until_serving(settings: Settings, container: Container, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            container.reload()
        except docker.errors.DockerException as exc:
            raise LocalBrokerError(f"lost the broker container: {exc}") from exc
        if container.status == "exited":
            logs = container.logs(tail=20).decode(errors="replace")
            raise LocalBrokerError(f"the broker container exited:\n{logs}")
        try:
            check_broker(settings)
            return
        except MessagingError as exc:
            last = exc
        time.sleep(1)  # RabbitMQ takes several seconds to boot; nothing to wait on instead
    raise LocalBrokerError(
        f"the broker container did not serve {redact(settings.amqp_url)} within {timeout:g}s"
        f" ({last})"
    )
