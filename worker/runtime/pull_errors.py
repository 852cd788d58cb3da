"""Which engine refusals of a pull are for good: the Docker engine's words, read once here.

The engine reports a failed pull as an HTTP status and a sentence (a 500 wraps the
registry's own error), or as an `error` line in the pull's progress stream. Reading
that sentence is the only way to tell "no such host" from "i/o timeout"; it is done
here and nowhere else, and what comes out is data (shared.images.ImageProblem).
Anything not recognised is taken as passing (None): the task restarts, as before.
"""

from __future__ import annotations

from shared.images import ImageProblem

_INVALID_NAME = ("invalid reference format", "invalid repository name")
_NO_SUCH_IMAGE = (
    "manifest unknown",
    "not found: manifest",
    "repository does not exist",
    "pull access denied",
    "name unknown",
)
_NO_REGISTRY = (
    "no such host",  # the registry's host name does not resolve
    "connection refused",  # nothing listens there
    "network is unreachable",
    "no route to host",
    "server gave http response to https client",  # not a registry at that address
)


def classify(status: int | None, said: str) -> ImageProblem | None:
    """The lasting problem a failed pull shows, or None when it may pass on a retry.

    `status` is the engine's HTTP status (None for an error line in the pull's stream);
    `said` is the engine's explanation.
    """
    text = said.lower()
    if status == 400 or any(words in text for words in _INVALID_NAME):
        return ImageProblem.INVALID_NAME
    if status == 404 or any(words in text for words in _NO_SUCH_IMAGE):
        return ImageProblem.NO_SUCH_IMAGE
    if any(words in text for words in _NO_REGISTRY):
        return ImageProblem.NO_REGISTRY
    return None
