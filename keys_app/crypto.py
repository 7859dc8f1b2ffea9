"""AES-256-GCM envelope primitives for every level of the key hierarchy.

This module is deliberately small and has no Django imports so that it can be
reviewed in one sitting and tested without a database.

Byte format of a sealed blob (format version 1)::

    offset  size  field
    0       1     format version, 0x01
    1       4     key version (unsigned big-endian) of the key that sealed it
    5       12    nonce, random, chosen here and never by a caller
    17      n+16  AES-256-GCM ciphertext of the n plaintext bytes, then the 16-byte tag

The GCM associated data is ``blob[0:5] + context``: the header itself is
authenticated, so a flipped version byte or key version fails like any other
tamper.  ``context`` is built with :func:`aad`, a length-prefixed encoding of
the names of *what is sealed* and *what seals it* (for example
``aad("dek", dek_id, key_id, kek_version)``), so a blob moved to another row,
or opened by another key version, fails loudly.

Every failure to open a blob -- wrong key, wrong context, truncated, oversized,
unknown format version, flipped bit -- raises the single opaque
:class:`InvalidCiphertext`, whose message never contains key or plaintext
bytes.  Lengths are checked before any slicing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + 4
OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
#: Largest blob :func:`open_` accepts by default (1 MiB); callers may lower it.
MAX_BLOB_BYTES = 1 << 20
_MAX_KEY_VERSION = 0xFFFFFFFF

_header = struct.Struct(">BI")

NonceSource = Callable[[int], bytes]


class InvalidCiphertext(Exception):
    """The one error for every blob that cannot be opened; it says nothing more."""

    def __init__(self) -> None:
        super().__init__("ciphertext could not be authenticated")


class SecretBytes:
    """Key material that never shows itself in a ``repr``, ``str`` or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"<SecretBytes len={len(self._value)}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value).digest())

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("key material is not picklable")


def generate_key() -> SecretBytes:
    """A fresh 256-bit key from the operating system's CSPRNG."""
    return SecretBytes(os.urandom(KEY_BYTES))


def aad(*parts: str | int | UUID | bytes) -> bytes:
    """Canonical associated data: each part as ``len(2 bytes) || utf-8``.

    Length prefixes make the encoding injective (``("ab", "c")`` differs from
    ``("a", "bc")``).
    """
    out = bytearray()
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        if len(raw) > 0xFFFF:
            raise ValueError("associated data part too long")
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def _key_bytes(key: SecretBytes | bytes) -> bytes:
    raw = key.reveal() if isinstance(key, SecretBytes) else key
    if len(raw) != KEY_BYTES:
        raise ValueError("AES-256 keys are 32 bytes")
    return raw


def seal(
    key: SecretBytes | bytes,
    plaintext: bytes,
    *,
    context: bytes,
    key_version: int,
    nonce_source: NonceSource = os.urandom,
) -> bytes:
    """Encrypt ``plaintext`` under ``key``, binding ``context`` and ``key_version``."""
    if not 0 <= key_version <= _MAX_KEY_VERSION:
        raise ValueError("key version out of range")
    header = _header.pack(FORMAT_VERSION, key_version)
    nonce = nonce_source(NONCE_BYTES)
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce source returned the wrong length")
    body = AESGCM(_key_bytes(key)).encrypt(nonce, plaintext, header + context)
    return header + nonce + body


def key_version_of(blob: bytes) -> int:
    """The key version named in a blob's header (unauthenticated until opened)."""
    if len(blob) < OVERHEAD or blob[0] != FORMAT_VERSION:
        raise InvalidCiphertext()
    return int(_header.unpack_from(blob)[1])


def open_(
    key: SecretBytes | bytes,
    blob: bytes,
    *,
    context: bytes,
    max_bytes: int = MAX_BLOB_BYTES,
) -> bytes:
    """Authenticate and decrypt ``blob``; raise :class:`InvalidCiphertext` on any failure."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidCiphertext()
    blob = bytes(blob)
    if len(blob) < OVERHEAD or len(blob) > max_bytes or blob[0] != FORMAT_VERSION:
        raise InvalidCiphertext()
    header = blob[:HEADER_BYTES]
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    try:
        return AESGCM(_key_bytes(key)).decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], header + context)
    except (InvalidTag, ValueError):
        raise InvalidCiphertext() from None


def key_check_value(key: SecretBytes | bytes) -> bytes:
    """A 16-byte public fingerprint used to recognise a key without revealing it.

    HMAC-SHA256 of a fixed label: one-way, so storing it in a database leaks
    nothing usable about the key.
    """
    return hmac.new(_key_bytes(key), b"hkms key check value v1", hashlib.sha256).digest()[:16]
