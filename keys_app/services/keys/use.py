"""Key use: encrypt, decrypt, data keys, sign, verify, public key, wrap, unwrap (``KEY_USE``).

Every use is audited before its result is returned, with ids, versions and algorithm
names only, never plaintexts, ciphertexts, signatures or key bytes.  Every way a
ciphertext can fail to open is the same ``invalid_arguments`` error.  Symmetric
encrypt/decrypt and ML-KEM wrap/unwrap share one implementation (:func:`_seal_use`,
:func:`_open_use`), parameterised by the operation: same checks, same answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PreconditionFailed
from keys_app import asymmetric, crypto
from keys_app.errors import KeyDisabled, KeyMaterialUnavailable
from keys_app.models import KekVersion, Key
from keys_app.services.keys.limits import MAX_ASSOCIATED_DATA, MAX_DECRYPT_CIPHERTEXT, MAX_ENCRYPT_PLAINTEXT
from keys_app.services.keys.permissions import current_time, failures_audited, key_for
from keys_app.services.keys.validation import bytes_arg
from keys_app.services.material import (
    kek_material,
    key_require_enabled,
)


@dataclass(frozen=True)
class CryptoResult:
    """The output of a key use.  ``data`` (plaintext, ciphertext or signature) never shows in a repr."""

    key: Key
    data: bytes = field(repr=False)
    #: decrypt only: the plaintext re-encrypted under the primary version, when an older one made it.
    reencrypted: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DataKey:
    key: Key
    ciphertext: bytes = field(repr=False)
    plaintext: bytes | None = field(repr=False)
    created_at: datetime
    algorithm: str = "aes_256_gcm"


def _entry(key: Key) -> asymmetric.Algorithm:
    try:
        return asymmetric.algorithm(key.algorithm)
    except asymmetric.UnsupportedAlgorithm as exc:
        raise PreconditionFailed("unsupported_algorithm", str(exc)) from None


def _require_family(key: Key, families: tuple[str, ...], operation: str) -> asymmetric.Algorithm:
    entry = _entry(key)
    if entry.family not in families:
        raise PreconditionFailed(
            "key_usage",
            f"{operation} is not possible with key {key.id} ({key.usage}, {key.algorithm})",
        )
    return entry


def _require_enabled(key: Key) -> None:
    try:
        key_require_enabled(key)
    except KeyDisabled:
        raise PreconditionFailed(
            "key_state", f"key {key.id} is {key.state}: it cannot be used until it is enabled"
        ) from None


def _public_der(key: Key) -> bytes:
    row = KekVersion.objects.using("kek").filter(key_id=key.id, version=key.primary_version).first()
    if row is None or row.public_key is None or row.state == KekVersion.State.DESTROYED:
        raise PreconditionFailed("key_material", f"key {key.id} has no public key")
    return bytes(row.public_key)


def _context(key: Key, associated_data: bytes | None) -> bytes:
    return crypto.aad("key-manager", str(key.id), associated_data or b"")


def _undecryptable() -> InvalidArgument:
    return InvalidArgument(
        "ciphertext", "cannot be decrypted by this key with this associated data (wrong key or data, or altered)"
    )


def _use(principal: Principal, key_id: Any, event: str, region: str | None) -> Key:
    return key_for(principal, key_id, Action.KEY_USE, event, region=region)


def _audit_use(principal: Principal, event: str, key: Key, **detail: Any) -> None:
    with transaction.atomic():
        audit_record(principal, event, key, **detail)


def _decrypt_symmetric(key: Key, ciphertext: bytes, associated_data: bytes | None) -> tuple[bytes, bytes | None, int]:
    try:
        version = crypto.key_version_of(ciphertext)
    except crypto.InvalidCiphertext:
        raise _undecryptable() from None
    if not 1 <= version <= key.primary_version:
        raise _undecryptable()
    if version != key.primary_version:
        # Older versions may have been destroyed (delete_key_material, revoke_key) by another
        # process whose cache drop did not reach ours: ask the kek database, not the cache.
        row = KekVersion.objects.using("kek").filter(key_id=key.id, version=version).values("state").first()
        if row is None or row["state"] == KekVersion.State.DESTROYED:
            raise KeyMaterialUnavailable(f"version {version} of key {key.id} was destroyed")
    context = _context(key, associated_data)
    try:
        plaintext = crypto.open_(
            kek_material(key.id, version), ciphertext, context=context, max_bytes=MAX_DECRYPT_CIPHERTEXT
        )
    except crypto.InvalidCiphertext:
        raise _undecryptable() from None
    reencrypted = None
    if version != key.primary_version:
        reencrypted = crypto.seal(
            kek_material(key.id, key.primary_version), plaintext, context=context, key_version=key.primary_version
        )
    return plaintext, reencrypted, version


def _wrap_context(associated_data: bytes | None) -> bytes:
    return crypto.aad("key-manager-wrap", associated_data or b"")


def _seal_use(
    *,
    principal: Principal,
    key_id: Any,
    region: str | None,
    event: str,
    operation: str,
    families: tuple[str, ...],
    plaintext: bytes,
    max_plaintext: int,
    associated_data: bytes | None,
) -> CryptoResult:
    """Encrypt or wrap: one implementation, the key's algorithm family picks the primitive.

    Checks, in the order each operation always had them: the family; for ML-KEM
    (wrap) the associated data; the plaintext's size; the key's state; then for AES
    the associated data, for RSA-OAEP that there is none.  Audited as a use of the
    primary version.
    """
    key = _use(principal, key_id, event, region)
    with failures_audited(principal, event, key):
        entry = _require_family(key, families, operation)
        if entry.family == "ml_kem":
            associated_data = bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
        plaintext = bytes_arg(plaintext, "plaintext", low=1, high=max_plaintext)
        _require_enabled(key)
        if entry.is_symmetric:
            associated_data = bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
            ciphertext = crypto.seal(
                kek_material(key.id, key.primary_version),
                plaintext,
                context=_context(key, associated_data),
                key_version=key.primary_version,
            )
        elif entry.family == "ml_kem":
            ciphertext = asymmetric.wrap(
                key.algorithm,
                _public_der(key),
                plaintext,
                context=_wrap_context(associated_data),
                key_version=key.primary_version,
            )
        else:
            if associated_data:
                raise InvalidArgument("associated_data", "is only supported by symmetric keys")
            try:
                ciphertext = asymmetric.encrypt(key.algorithm, _public_der(key), plaintext)
            except ValueError as exc:
                raise InvalidArgument("plaintext", str(exc)) from None
        _audit_use(principal, event, key, key_version=key.primary_version)
    return CryptoResult(key=key, data=ciphertext)


def _open_use(
    *,
    principal: Principal,
    key_id: Any,
    region: str | None,
    event: str,
    operation: str,
    families: tuple[str, ...],
    ciphertext: bytes,
    max_ciphertext: int,
    associated_data: bytes | None,
) -> CryptoResult:
    """Decrypt or unwrap: one implementation, the key's algorithm family picks the primitive.

    Checks, in the order each operation always had them: the family; the ciphertext's
    and the associated data's sizes (ML-KEM: associated data first); the key's state;
    for RSA-OAEP that there is no associated data.  Every way a ciphertext fails to
    open is the same ``invalid_arguments`` error.  A decrypt is audited with the
    version that made the ciphertext and whether it was re-encrypted; an unwrap with
    the primary version.
    """
    key = _use(principal, key_id, event, region)
    with failures_audited(principal, event, key):
        entry = _require_family(key, families, operation)
        if entry.family == "ml_kem":
            associated_data = bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
            ciphertext = bytes_arg(ciphertext, "ciphertext", low=1, high=max_ciphertext)
        else:
            ciphertext = bytes_arg(ciphertext, "ciphertext", low=1, high=max_ciphertext)
            associated_data = bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
        _require_enabled(key)
        reencrypted = None
        version = key.primary_version
        if entry.is_symmetric:
            plaintext, reencrypted, version = _decrypt_symmetric(key, ciphertext, associated_data)
        else:
            if associated_data and entry.family != "ml_kem":
                raise InvalidArgument("associated_data", "is only supported by symmetric keys")
            material = kek_material(key.id, key.primary_version)
            try:
                if entry.family == "ml_kem":
                    plaintext = asymmetric.unwrap(
                        key.algorithm, material, ciphertext, context=_wrap_context(associated_data)
                    )
                else:
                    plaintext = asymmetric.decrypt(key.algorithm, material, ciphertext)
            except crypto.InvalidCiphertext:
                raise _undecryptable() from None
        if entry.family == "ml_kem":
            _audit_use(principal, event, key, key_version=version)
        else:
            _audit_use(principal, event, key, key_version=version, reencrypted=reencrypted is not None)
    return CryptoResult(key=key, data=plaintext, reencrypted=reencrypted)


def key_encrypt(
    *,
    principal: Principal,
    key_id: Any,
    plaintext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Encrypt 1..65,535 bytes; the server picks the nonce.  RSA-OAEP keys take no associated data."""
    return _seal_use(
        principal=principal,
        key_id=key_id,
        region=region,
        event="key.encrypt",
        operation="encrypt",
        families=("aes", "rsa_oaep"),
        plaintext=plaintext,
        max_plaintext=MAX_ENCRYPT_PLAINTEXT,
        associated_data=associated_data,
    )


def key_decrypt(
    *,
    principal: Principal,
    key_id: Any,
    ciphertext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Decrypt a ciphertext (≤ 131,071 bytes) made by any non-destroyed version of the key.

    Every way a ciphertext can fail to open (wrong key, wrong associated data,
    altered, truncated, unknown version) is the same ``invalid_arguments``
    error; a version that was crypto-shredded answers ``resource_expired``.
    """
    return _open_use(
        principal=principal,
        key_id=key_id,
        region=region,
        event="key.decrypt",
        operation="decrypt",
        families=("aes", "rsa_oaep"),
        ciphertext=ciphertext,
        max_ciphertext=MAX_DECRYPT_CIPHERTEXT,
        associated_data=associated_data,
    )


def key_wrap(
    *,
    principal: Principal,
    key_id: Any,
    plaintext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Wrap up to 2,048 bytes of key material to an ML-KEM key (format in ``keys_app.asymmetric``)."""
    return _seal_use(
        principal=principal,
        key_id=key_id,
        region=region,
        event="key.wrap",
        operation="wrap_key",
        families=("ml_kem",),
        plaintext=plaintext,
        max_plaintext=asymmetric.WRAP_MAX_PLAINTEXT,
        associated_data=associated_data,
    )


def key_unwrap(
    *,
    principal: Principal,
    key_id: Any,
    ciphertext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Unwrap what :func:`key_wrap` made with this key (and the same associated data)."""
    return _open_use(
        principal=principal,
        key_id=key_id,
        region=region,
        event="key.unwrap",
        operation="unwrap_key",
        families=("ml_kem",),
        ciphertext=ciphertext,
        max_ciphertext=asymmetric.WRAP_MAX_CIPHERTEXT,
        associated_data=associated_data,
    )


def key_generate_data_key(
    *,
    principal: Principal,
    key_id: Any,
    without_plaintext: bool = False,
    algorithm: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> DataKey:
    """A fresh AES-256 data key sealed by the key's primary version (envelope encryption).

    The ciphertext has the format of :func:`key_encrypt` without associated
    data, so :func:`key_decrypt` returns the data key.  Nothing is stored.
    """
    key = _use(principal, key_id, "key.generate_data_key", region)
    with failures_audited(principal, "key.generate_data_key", key):
        if algorithm not in (None, "", "aes_256_gcm", "unknown_symmetric_encryption"):
            raise InvalidArgument("algorithm", "data keys are aes_256_gcm")
        _require_family(key, ("aes",), "generate_data_key")
        _require_enabled(key)
        data_key = crypto.generate_key()
        ciphertext = crypto.seal(
            kek_material(key.id, key.primary_version),
            data_key.reveal(),
            context=_context(key, None),
            key_version=key.primary_version,
        )
        _audit_use(
            principal,
            "key.generate_data_key",
            key,
            key_version=key.primary_version,
            with_plaintext=not without_plaintext,
        )
    return DataKey(
        key=key,
        ciphertext=ciphertext,
        plaintext=None if without_plaintext else data_key.reveal(),
        created_at=current_time(now),
    )


def key_sign(*, principal: Principal, key_id: Any, digest: bytes, region: str | None = None) -> CryptoResult:
    """Sign a digest (ML-DSA: the given bytes) with an ``asymmetric_signing`` key."""
    key = _use(principal, key_id, "key.sign", region)
    with failures_audited(principal, "key.sign", key):
        _require_family(key, ("ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa"), "sign")
        _require_enabled(key)
        try:
            signature = asymmetric.sign(key.algorithm, kek_material(key.id, key.primary_version), digest)
        except ValueError as exc:
            raise InvalidArgument("digest", str(exc)) from None
        _audit_use(principal, "key.sign", key, key_version=key.primary_version)
    return CryptoResult(key=key, data=signature)


def key_verify(
    *, principal: Principal, key_id: Any, digest: bytes, signature: bytes, region: str | None = None
) -> tuple[Key, bool]:
    """Whether ``signature`` is valid for ``digest``; a malformed signature is just invalid."""
    key = _use(principal, key_id, "key.verify", region)
    with failures_audited(principal, "key.verify", key):
        _require_family(key, ("ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa"), "verify")
        _require_enabled(key)
        bytes_arg(signature, "signature", low=1, high=MAX_DECRYPT_CIPHERTEXT)
        try:
            valid = asymmetric.verify(key.algorithm, _public_der(key), digest, signature)
        except ValueError as exc:
            raise InvalidArgument("digest", str(exc)) from None
        _audit_use(principal, "key.verify", key, valid=valid)
    return key, valid


def key_get_public_key(*, principal: Principal, key_id: Any, region: str | None = None) -> str:
    """The PEM public key of an asymmetric key (public: not audited as a use)."""
    key = key_for(principal, key_id, Action.KEY_VIEW, "key.get_public_key", region=region)
    _require_family(key, ("rsa_oaep", "ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa", "ml_kem"), "get_public_key")
    return asymmetric.public_pem(_public_der(key))


def key_list_algorithms(*, usages: list[str] | None = None) -> list[asymmetric.Algorithm]:
    """The algorithms this installation supports (those the OpenSSL build lacks are left out)."""
    wanted = {u for u in (usages or []) if u and u != "unknown_usage"}
    unknown = wanted - set(asymmetric.USAGES)
    if unknown:
        raise InvalidArgument("usages", f"unknown usage {sorted(unknown)[0]!r}")
    return [entry for entry in asymmetric.available_algorithms() if not wanted or entry.usage in wanted]


__all__ = [
    "CryptoResult",
    "DataKey",
    "key_decrypt",
    "key_encrypt",
    "key_generate_data_key",
    "key_get_public_key",
    "key_list_algorithms",
    "key_sign",
    "key_unwrap",
    "key_verify",
    "key_wrap",
]
