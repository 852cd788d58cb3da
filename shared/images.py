"""Why a task's image cannot be had for good, as data, and the sentence people read.

A pull that can never work (no such image, no registry there, a name the engine cannot
parse) fails the task at once instead of restarting it: a restart would meet the same
answer after a backoff (issue 15). The worker classifies the engine's refusal
(worker/runtime/pull_errors.py) and sends the problem in its TaskUpdate; the manager then
ends the task without a restart, or, for a service's task, tries again after a backoff
that grows to 5 minutes (manager/restarts.py), as Kubernetes' ImagePullBackOff does.
A problem that may pass (a registry that timed out, a rate limit) is not an ImageProblem:
the task restarts as for any failed start.
"""

from __future__ import annotations

import enum

LOCAL_BUSYBOX = "localhost/kube-busybox:latest"
"""The busybox image built on this machine, without any registry."""

BUILD_BUSYBOX = "bash deploy/images/busybox.sh"
"""The command that builds LOCAL_BUSYBOX (from the host's static busybox)."""


class ImageProblem(enum.StrEnum):
    """Why an image cannot be pulled, and will not be on a retry."""

    NO_SUCH_IMAGE = "no-such-image"  # the registry answered: no such repository, tag, manifest
    NO_REGISTRY = "no-registry"  # the registry's host is unknown, or nothing listens there
    INVALID_NAME = "invalid-name"  # the engine cannot parse the reference


_WHY = {
    ImageProblem.NO_SUCH_IMAGE: "the registry has no such image",
    ImageProblem.NO_REGISTRY: "no registry can be reached for it",
    ImageProblem.INVALID_NAME: "the name is not a valid image reference",
}


def describe(image: str, problem: ImageProblem, node: str, detail: str) -> str:
    """The task's error for people: the image, why, what the engine said, and what to do.

    Whether the task restarts is the manager's to say (its history): a service's task
    tries again after a backoff, a task of its own does not. A name that is not a valid
    reference gets no advice to build an image locally: no image can have that name.
    """
    said = f"image {image!r} is not on node {node} and cannot be pulled: {_WHY[problem]} ({detail})"
    if problem is ImageProblem.INVALID_NAME:
        return said
    return (
        f"{said}. Images can be built locally instead: `{BUILD_BUSYBOX}`"
        f" builds {LOCAL_BUSYBOX}, or `docker build`/`docker load` one on each node"
    )
