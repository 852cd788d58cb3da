"""The exceptions kube raises, one root and a small subtree per boundary.

    KubeError
    ├── DecodeError            a wire message is not JSON, too large, or not a valid model
    ├── MessagingError         the broker cannot be reached or refused an operation
    │   ├── ConnectionLost     the connection or channel to the broker is gone (a bus reconnects)
    │   ├── ResourceLocked     an exclusive queue is held by another connection (a manager)
    │   ├── NoManagerError     a request got no reply in time
    │   └── UnroutableError    a publish reached no queue
    ├── RuntimeFailure         the container engine failed an operation
    │   ├── EngineUnavailable  the engine does not answer
    │   └── ImageNotFound      the image is not local and the pull policy forbids or failed a pull
    ├── SettingsError          a setting or argument (flag, environment variable) is not usable
    ├── StoreError             the manager's database failed
    │   ├── StoreUnavailable   the connection to the database is gone (a manager reconnects)
    │   └── Deposed            another manager took the lease: this one's writes are refused
    ├── MetricsError           the /metrics endpoint cannot be served (its port is taken)
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


class NoManagerError(MessagingError):
    """No manager answered a request before the timeout."""


class UnroutableError(MessagingError):
    """A message was returned by the broker because no queue is bound for it."""


class RuntimeFailure(KubeError):
    """The container engine failed an operation."""


class EngineUnavailable(RuntimeFailure):
    """The container engine does not answer."""


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


class RequestError(KubeError):
    """The manager answered a request with `ok: false`."""
