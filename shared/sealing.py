"""Sealed boxes: a value encrypted for one holder of an X25519 key, and no one else.

A secret travels through the broker twice: from `kube secret create` to the manager (on
kube.commands, a durable queue that dead-letters what it refuses) and from the manager
to the worker that runs the task (on the node's queue, likewise). Neither leg may leave
its plaintext on the broker's disk or in `kube.dead-letters`, so each is sealed for its
reader's key: the manager's (derived from its secrets key file, manager/secret_key.py)
and a key the worker makes for one attempt and forgets when the files are written.

The construction is the usual ECIES: a fresh X25519 key pair per box, its shared secret
with the reader's public key through HKDF-SHA256 into a ChaCha20-Poly1305 key, and the
`context` (which secret, for what) as associated data, so a box opened under another
name or for another task fails.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import SecretError

VERSION = b"\x01"
KEY_BYTES = 32
NONCE_BYTES = 12
OVERHEAD = len(VERSION) + KEY_BYTES + NONCE_BYTES + 16
"""What sealing adds to a value: version, the box's public key, nonce, tag."""


class SealError(SecretError):
    """A sealed box that does not open: another key, another context, or damaged."""


def _box_key(shared: bytes, sender: bytes, reader: bytes) -> ChaCha20Poly1305:
    key = HKDF(hashes.SHA256(), KEY_BYTES, salt=sender + reader, info=b"kube sealed v1")
    return ChaCha20Poly1305(key.derive(shared))


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32 bytes of a private key's public half, as the wire carries it."""
    return key.public_key().public_bytes_raw()


def seal(reader: bytes, plaintext: bytes, context: bytes) -> bytes:
    """`plaintext` sealed for the holder of the private half of `reader` (32 raw bytes)."""
    if len(reader) != KEY_BYTES:
        raise SealError(f"a public key is {KEY_BYTES} bytes, not {len(reader)}")
    sender = X25519PrivateKey.generate()
    shared = sender.exchange(X25519PublicKey.from_public_bytes(reader))
    mine = public_bytes(sender)
    nonce = os.urandom(NONCE_BYTES)
    box = _box_key(shared, mine, reader).encrypt(nonce, plaintext, context)
    return VERSION + mine + nonce + box


def unseal(key: X25519PrivateKey, sealed: bytes, context: bytes) -> bytes:
    """The plaintext of a box sealed for `key` with this `context`; SealError if not."""
    if len(sealed) < OVERHEAD or sealed[:1] != VERSION:
        raise SealError("not a sealed value of this kube (wrong version or too short)")
    sender = sealed[1 : 1 + KEY_BYTES]
    nonce = sealed[1 + KEY_BYTES : 1 + KEY_BYTES + NONCE_BYTES]
    shared = key.exchange(X25519PublicKey.from_public_bytes(sender))
    try:
        return _box_key(shared, sender, public_bytes(key)).decrypt(
            nonce, sealed[1 + KEY_BYTES + NONCE_BYTES :], context
        )
    except InvalidTag as exc:
        raise SealError("the sealed value does not open with this key for this use") from exc
