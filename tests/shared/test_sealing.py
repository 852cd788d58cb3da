"""Sealed boxes open only for their reader's key and their context."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from shared.sealing import OVERHEAD, SealError, public_bytes, seal, unseal


def test_a_box_opens_for_its_reader_and_context_only() -> None:
    # given a reader's key and a value sealed for it
    reader = X25519PrivateKey.generate()
    box = seal(public_bytes(reader), b"hunter2", b"kube secret db")
    # then the reader opens it, and the value is nowhere in the box
    assert unseal(reader, box, b"kube secret db") == b"hunter2"
    assert b"hunter2" not in box and len(box) == len(b"hunter2") + OVERHEAD
    # and another key, another context or a flipped byte does not open it
    with pytest.raises(SealError):
        unseal(X25519PrivateKey.generate(), box, b"kube secret db")
    with pytest.raises(SealError):
        unseal(reader, box, b"kube secret other")
    with pytest.raises(SealError):
        unseal(reader, box[:-1] + bytes([box[-1] ^ 1]), b"kube secret db")


def test_sealing_the_same_value_twice_gives_two_boxes() -> None:
    reader = public_bytes(X25519PrivateKey.generate())
    assert seal(reader, b"x", b"c") != seal(reader, b"x", b"c")


def test_a_short_or_foreign_box_is_refused_by_name() -> None:
    with pytest.raises(SealError, match="not a sealed value"):
        unseal(X25519PrivateKey.generate(), b"\x02" + bytes(80), b"c")
    with pytest.raises(SealError, match="32 bytes"):
        seal(b"short", b"x", b"c")
