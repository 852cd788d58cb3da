"""The user-facing package: the `kube` command and the Python client it is built on."""

from kube.client import Client

__all__ = ["Client"]
