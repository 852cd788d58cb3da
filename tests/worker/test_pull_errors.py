"""Which pull refusals are for good: the engine's errors, built as the docker SDK raises them."""

from __future__ import annotations

import json

import docker.errors
import pytest
import requests

from shared.errors import ImageNotFound
from shared.images import LOCAL_BUSYBOX, ImageProblem, describe
from worker.runtime.docker import _translate
from worker.runtime.pull_errors import classify


def sdk_error(status: int, message: str) -> docker.errors.APIError:
    """The APIError the SDK raises for an engine reply with this status and message."""
    response = requests.Response()
    response.status_code = status
    response.reason = "Internal Server Error" if status == 500 else "Error"
    response._content = json.dumps({"message": message}).encode()
    try:
        docker.errors.create_api_error_from_http_exception(
            requests.exceptions.HTTPError(response=response)
        )
    except docker.errors.APIError as exc:
        return exc
    raise AssertionError("the SDK raised nothing")


LASTING = [
    # what this machine's engine said, word for word, with no registry reachable
    (
        500,
        'Get "https://nonexistent.invalid/v2/": dial tcp: lookup nonexistent.invalid on'
        " 10.255.255.53:53: no such host",
        ImageProblem.NO_REGISTRY,
    ),
    (
        500,
        'Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
        ImageProblem.NO_REGISTRY,
    ),
    (400, "invalid reference format: repository name must be lowercase", ImageProblem.INVALID_NAME),
    # what a registry that answers says of an image it does not have
    (
        404,
        "pull access denied for nosuchimage, repository does not exist or may require"
        " 'docker login': denied: requested access to the resource is denied",
        ImageProblem.NO_SUCH_IMAGE,
    ),
    (500, "manifest for busybox:nope not found: manifest unknown", ImageProblem.NO_SUCH_IMAGE),
]

PASSING = [
    (500, 'Get "https://registry-1.docker.io/v2/": net/http: TLS handshake timeout'),
    (500, 'Get "https://registry-1.docker.io/v2/": dial tcp 1.2.3.4:443: i/o timeout'),
    (500, "toomanyrequests: You have reached your pull rate limit"),
    (500, "received unexpected HTTP status: 503 Service Unavailable"),
]


@pytest.mark.parametrize(("status", "said", "problem"), LASTING)
def test_a_pull_that_can_never_work_is_classified_for_good(
    status: int, said: str, problem: ImageProblem
) -> None:
    # given the engine's refusal of a pull, as the SDK raises it
    exc = sdk_error(status, said)
    # when it is translated
    error = _translate(exc, "pull", image="nonexistent.invalid/x:1")
    # then it is an ImageNotFound that carries the lasting problem and the engine's words
    assert isinstance(error, ImageNotFound)
    assert (error.problem, error.said) == (problem, said)


@pytest.mark.parametrize(("status", "said"), PASSING)
def test_a_pull_that_may_work_later_is_not(status: int, said: str) -> None:
    error = _translate(sdk_error(status, said), "pull", image="busybox")
    assert isinstance(error, ImageNotFound) and error.problem is None


def test_an_error_line_in_the_pull_stream_is_classified_too() -> None:
    assert classify(None, "manifest unknown: manifest unknown") is ImageProblem.NO_SUCH_IMAGE
    assert classify(None, "read tcp 10.0.0.2:443: i/o timeout") is None


def test_the_sentence_names_the_image_why_and_the_local_image() -> None:
    said = "dial tcp: lookup nonexistent.invalid: no such host"
    text = describe("nonexistent.invalid/x:1", ImageProblem.NO_REGISTRY, "n1", said)
    assert text.startswith("image 'nonexistent.invalid/x:1' is not on node n1")
    assert "no registry can be reached" in text and said in text
    assert "deploy/images/busybox.sh" in text and LOCAL_BUSYBOX in text


def test_an_invalid_name_gets_no_advice_to_build_an_image_of_that_name() -> None:
    text = describe("UPPERCASE/bad", ImageProblem.INVALID_NAME, "n1", "invalid reference format")
    assert text.startswith("image 'UPPERCASE/bad' is not on node n1")
    assert "not a valid image reference" in text and "invalid reference format" in text
    assert "busybox.sh" not in text and "docker build" not in text
