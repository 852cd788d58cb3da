"""The exceptions kube raises, one root and a small subtree per boundary.

    KubeError
    ├── DecodeError            a wire message is not JSON, too large, or not a valid model
    ├── MessagingError         the broker cannot be reached or refused an operation
    │   ├── ConnectionLost     the connection or channel to the broker is gone (a bus reconnects)
    │   │   ├── BrokerUnreachable   nothing answers AMQP at the broker's address
    │   │   ├── LoginRefused        the broker refused the user name or password
    │   │   ├── VhostRefused        the vhost does not exist, or the user may not use it
    │   │   └── TlsRefused          the broker's certificate is not one this client trusts
    │   ├── ResourceLocked     an exclusive queue is held by another connection (a manager)
    │   ├── NoManagerError     no manager can take a request, or none answered it in time
    │   │   └── Unanswered         the broker took the request; no reply came in time
    │   │       └── Queued         a command: it waits in its queue for the next manager
    │   └── UnroutableError    a publish reached no queue
    ├── RuntimeFailure         the container engine failed an operation
    │   ├── EngineUnavailable  the engine does not answer
    │   ├── NoSuchContainer    the node holds no container of that attempt
    │   └── ImageNotFound      the image is not local and the pull policy forbids or failed a pull
    ├── SettingsError          a setting or argument (flag, environment variable) is not usable
    ├── StoreError             the manager's database failed
    │   ├── StoreUnavailable   the connection to the database is gone (a manager reconnects)
    │   └── Deposed            another manager took the lease: this one's writes are refused
    ├── MetricsError           the /metrics endpoint cannot be served (its port is taken)
    ├── SecretError            a secret or config cannot be sealed, opened or decrypted
    └── RequestError           the manager answered a request with an error

pika, docker, sqlite3 and psycopg errors are translated into these at the module that talks
to that library, and nowhere else: pika's in shared/bus/ (services) and shared/rpc.py
(clients), the databases' in manager/store/sqlite.py and manager/store/postgres.py.
"""

from __future__ import annotations

from shared.images import ImageProblem


class KubeError(Exception):
    """Root of every error kube raises on purpose."""


class DecodeError(KubeError):
    """A message could not be decoded; `reason` says what was wrong, field by field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SettingsError(KubeError):
    """A setting or argument given in a flag or the environment cannot be used; the message
    says which."""


class MessagingError(KubeError):
    """The broker could not be reached or refused an operation."""


class ResourceLocked(MessagingError):
    """An exclusive queue is held by another connection: another manager runs there."""


class ConnectionLost(MessagingError):
    """The connection or channel to the broker is gone, or was never made.

    A `Bus` that meets it while serving reconnects by itself; what was published but not
    confirmed, or delivered but not acked, must be sent or handled again.
    """


class BrokerUnreachable(ConnectionLost):
    """Nothing answers AMQP at the broker's address (each of them, given several)."""

    def __init__(self, addresses: tuple[str, ...], cause: str) -> None:
        self.addresses = addresses
        self.cause = cause
        where = addresses[0] if len(addresses) == 1 else f"any of {', '.join(addresses)}"
        super().__init__(
            f"nothing answers at {where} ({cause}): start RabbitMQ there, or give the"
            " address of a running one in KUBE_AMQP_URL or --amqp-url"
        )


class TlsRefused(ConnectionLost):
    """The TLS handshake with the broker at `address` failed: its certificate is not signed
    by a CA this client trusts, or does not name the host the URL gives."""

    def __init__(self, address: str, cause: str) -> None:
        self.address = address
        self.cause = cause
        super().__init__(
            f"TLS with the broker at {address} failed: {cause}: give the CA that signed the"
            " broker's certificate in KUBE_AMQP_CA, and a host name the certificate names in"
            " the URL"
        )


class LoginRefused(ConnectionLost):
    """The broker at `address` refused to log `user` in: a wrong user name or password."""

    def __init__(self, user: str, address: str) -> None:
        self.user = user
        self.address = address
        super().__init__(
            f"authentication failed for user {user!r} at {address}: check the user name and"
            " password in KUBE_AMQP_URL or --amqp-url (an operator sets them with"
            " `rabbitmqctl add_user` or `rabbitmqctl change_password`)"
        )


class VhostRefused(ConnectionLost):
    """The broker refused the vhost: it does not exist, or `user` has no permission on it
    (RabbitMQ answers both with the same NOT_ALLOWED)."""

    def __init__(self, vhost: str, user: str, address: str) -> None:
        self.vhost = vhost
        self.user = user
        self.address = address
        super().__init__(
            f"the vhost {vhost!r} does not exist at {address} (or user {user!r} has no access"
            f" to it): create it with `rabbitmqctl add_vhost {vhost}` and grant it with"
            f" `rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'`"
        )


class NoManagerError(MessagingError):
    """No manager can take a request (none ever ran on the vhost), or none answered it
    before the timeout."""


class Unanswered(NoManagerError):
    """The broker confirmed and queued a request (routing key `key`), and no reply came
    within `timeout` seconds."""

    def __init__(self, message: str, key: str, timeout: float) -> None:
        super().__init__(message)
        self.key = key
        self.timeout = timeout


class Queued(Unanswered):
    """A command no manager answered in time, which stays in its queue: the next manager
    to start acts on it. `subject` is what it is about (a task id, a name)."""

    def __init__(self, message: str, key: str, timeout: float, subject: str | None) -> None:
        super().__init__(message, key, timeout)
        self.subject = subject


class UnroutableError(MessagingError):
    """A message was returned by the broker because no queue is bound for it."""


class RuntimeFailure(KubeError):
    """The container engine failed an operation."""


class EngineUnavailable(RuntimeFailure):
    """The container engine does not answer."""


class NoSuchContainer(RuntimeFailure):
    """The node holds no container of the attempt asked for (never started, or removed)."""


class ImageNotFound(RuntimeFailure):
    """The image is not present and could not (or may not) be pulled; `problem` says why
    when no retry can help (the task then fails without a restart)."""

    def __init__(self, message: str, problem: ImageProblem | None = None, said: str = "") -> None:
        super().__init__(message)
        self.problem = problem
        self.said = said or message  # the engine's own words


class StoreError(KubeError):
    """The manager's database failed."""


class StoreBusy(StoreError):
    """Another connection holds the SQLite file's write lock ("database is locked")."""


class StoreUnavailable(StoreError):
    """The connection to the database is gone (a server restarted, a link cut): the
    manager stops acting, reconnects, and competes for the lease again."""


class Deposed(StoreError):
    """Another manager holds the lease now, at a newer epoch: this one's transaction was
    rolled back, and it must stop acting at once (manager/leadership.py)."""


class MetricsError(KubeError):
    """The /metrics endpoint could not be served, e.g. its port is taken."""


class SecretError(KubeError):
    """A secret or config that cannot be sealed, opened or decrypted (its value never
    appears in the message: docs/secrets.md)."""


class RequestError(KubeError):
    """The manager answered a request with `ok: false`."""
