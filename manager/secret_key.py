"""The manager's secrets key: one file outside the store, from which every key is derived.

The file holds 32 random bytes, written as 64 hex digits (`kube up` makes it, mode 0600,
for a local cluster; docs/secrets.md says how to make one). From it HKDF derives:
- the store key: AES-256-GCM over each secret's value, with (kind, name, version) as
  associated data, so a ciphertext copied onto another row does not decrypt;
- the digest key: an HMAC of each value, to tell an update that changes nothing (a plain
  hash of a short password would let anyone with the database try guesses);
- the transport key: X25519, whose public half clients seal new values for
  (shared/sealing.py), so a value in a command on the broker is never in the clear;
- the key id: a short fingerprint kept on each row, to say "encrypted with another key"
  rather than failing obscurely when the file was replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import SecretError, SettingsError
from shared.sealing import public_bytes, unseal

KEY_BYTES = 32
NONCE_BYTES = 12


def _derive(master: bytes, use: str) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=f"kube {use}".encode()).derive(master)


def associated(kind: str, name: str, version: int) -> bytes:
    """What a stored ciphertext is bound to: decrypting it as another row fails."""
    return f"kube {kind} {name} {version}".encode()


@dataclass(frozen=True)
class SecretKey:
    """The keys derived from the secrets key file; `where` names the file in messages."""

    store: AESGCM
    digest_key: bytes
    transport: X25519PrivateKey
    key_id: str
    where: str

    @classmethod
    def from_bytes(cls, master: bytes, where: str) -> SecretKey:
        if len(master) != KEY_BYTES:
            raise SettingsError(f"the secrets key {where} must hold {KEY_BYTES} bytes")
        return cls(
            store=AESGCM(_derive(master, "store")),
            digest_key=_derive(master, "digest"),
            transport=X25519PrivateKey.from_private_bytes(_derive(master, "transport")),
            key_id=_derive(master, "key id").hex()[:16],
            where=where,
        )

    @classmethod
    def load(cls, path: Path) -> SecretKey:
        """Read the key file; refuse one others may read, or that is not 64 hex digits."""
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read the secrets key {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(
                f"the secrets key {path} has mode {stat.S_IMODE(mode):04o}: others may read"
                f" it; chmod 600 {path}"
            )
        try:
            master = bytes.fromhex(text)
        except ValueError:
            master = b""
        if len(master) != KEY_BYTES:
            raise SettingsError(
                f"the secrets key {path} must hold {KEY_BYTES * 2} hex digits (make one with"
                " `kube secret key FILE`)"
            )
        return cls.from_bytes(master, str(path))

    def public_key(self) -> bytes:
        """Where clients seal new values: the transport key's public half."""
        return public_bytes(self.transport)

    def digest(self, value: bytes) -> str:
        return hmac.new(self.digest_key, value, hashlib.sha256).hexdigest()

    def encrypt(self, kind: str, name: str, version: int, value: bytes) -> bytes:
        """nonce + ciphertext, as the store keeps it."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self.store.encrypt(nonce, value, associated(kind, name, version))

    def decrypt(self, kind: str, name: str, version: int, key_id: str, sealed: bytes) -> bytes:
        """A stored value; SecretError naming the row (never its value) when it fails."""
        if key_id != self.key_id:
            raise SecretError(
                f"{kind} {name} version {version} was encrypted with key {key_id}, not with"
                f" the key in {self.where} ({self.key_id}): start the manager with the key"
                " it was created with"
            )
        try:
            return self.store.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated(kind, name, version)
            )
        except InvalidTag as exc:
            raise SecretError(
                f"{kind} {name} version {version} does not decrypt with the key in"
                f" {self.where}: its row was altered or belongs to another row"
            ) from exc

    def opened(self, sealed: bytes, context: bytes) -> bytes:
        """A value a client sealed for this manager (shared/sealing.py)."""
        return unseal(self.transport, sealed, context)


def create_key_file(path: Path) -> bool:
    """Write a new random key at `path`, mode 0600, unless a file is there already;
    whether one was written. Never overwrites: a new key loses every stored secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(os.urandom(KEY_BYTES).hex() + "\n")
    return True
