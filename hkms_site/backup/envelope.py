"""Encrypting a backup archive to an operator's X25519 public key (no Django imports).

Hybrid encryption, streamed in chunks so an archive of any size never sits in
memory.  Byte format (all integers big-endian)::

    magic        8 bytes  b"HKMSBK1\\n"
    ephemeral   32 bytes  sender's one-time X25519 public key
    salt        16 bytes  random
    chunks      repeated: length (4 bytes) || AES-256-GCM ciphertext+tag of <= 1 MiB

    key   = HKDF-SHA256(X25519(ephemeral, recipient), salt,
                        info = b"hkms backup v1" || ephemeral || recipient public key)
    nonce = chunk index (11 bytes) || 0x01 for the last chunk, 0x00 otherwise
    AAD   = the 56 header bytes

The key is new for every archive (a fresh ephemeral key), so counter nonces
never repeat under one key.  The last-chunk flag in the nonce makes a truncated
file fail to open, and the header in the AAD binds every chunk to it.  Every
failure to open (wrong private key, edited, truncated, reordered) is one error,
:class:`BackupDecryptionError`, whose message never names which.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"HKMSBK1\n"
CHUNK = 1 << 20
_HEADER = len(MAGIC) + 32 + 16


class BackupDecryptionError(Exception):
    """The archive cannot be opened with this private key (or was altered)."""


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


def generate_keypair() -> tuple[bytes, bytes]:
    """``(private PEM, public PEM)`` of a new X25519 key pair for backups."""
    private = X25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_public_key(pem: bytes) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise ValueError("not an X25519 public key (make one with backup_keygen)")
    return key


def load_private_key(pem: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise ValueError("not an X25519 private key")
    return key


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, salt: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, salt, b"hkms backup v1" + ephemeral + recipient).derive(shared)
    return AESGCM(key)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def encrypt_stream(source: BinaryIO, target: BinaryIO, recipient: X25519PublicKey) -> None:
    """Encrypt all of ``source`` into ``target`` for the holder of ``recipient``'s private key."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw, salt = _raw(ephemeral.public_key()), os.urandom(16)
    aead = _derive(ephemeral.exchange(recipient), salt, ephemeral_raw, _raw(recipient))
    header = MAGIC + ephemeral_raw + salt
    target.write(header)
    index, chunk = 0, source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        last = not following
        sealed = aead.encrypt(_nonce(index, last), chunk, header)
        target.write(struct.pack(">I", len(sealed)) + sealed)
        if last:
            return
        index, chunk = index + 1, following


def decrypt_stream(source: BinaryIO, target: BinaryIO, private: X25519PrivateKey) -> None:
    """Decrypt an archive made by :func:`encrypt_stream`; raises :class:`BackupDecryptionError`."""
    header = source.read(_HEADER)
    if len(header) != _HEADER or not is_encrypted(header):
        raise BackupDecryptionError("not an encrypted HKMS backup, or it was altered")
    ephemeral_raw, salt = header[len(MAGIC) : len(MAGIC) + 32], header[len(MAGIC) + 32 :]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
    except ValueError:
        raise BackupDecryptionError("cannot open the backup with this private key, or it was altered") from None
    aead = _derive(shared, salt, ephemeral_raw, _raw(private.public_key()))
    index = 0
    while True:
        length_bytes = source.read(4)
        if len(length_bytes) != 4:
            raise BackupDecryptionError("cannot open the backup with this private key, or it was altered")
        (length,) = struct.unpack(">I", length_bytes)
        if length > CHUNK + 16:
            raise BackupDecryptionError("cannot open the backup with this private key, or it was altered")
        sealed = source.read(length)
        for last in (False, True):
            try:
                chunk = aead.decrypt(_nonce(index, last), sealed, header)
            except InvalidTag:
                continue
            target.write(chunk)
            break
        else:
            raise BackupDecryptionError("cannot open the backup with this private key, or it was altered")
        if last:
            if source.read(1):
                raise BackupDecryptionError("cannot open the backup with this private key, or it was altered")
            return
        index += 1
