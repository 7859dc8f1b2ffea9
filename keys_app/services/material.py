"""KEK and DEK material: creation, unwrapping (with the process cache), state.

Ordering rules (there is no transaction across databases):

* A key's KEK version 1 is committed on the kek database *before* its ``Key``
  row on default, so a visible key always has material; a crash in between
  leaves an unreferenced KEK row, which is harmless.
* A DEK is committed on the dek database *before* the secret version that uses
  it, so a visible version always has its DEK.

Every unwrap checks the key's state first: a disabled key's DEKs cannot be
unwrapped, even when the unwrapped DEK is still cached.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError as DbIntegrityError
from django.db import transaction
from django.utils import timezone

from keys_app import crypto
from keys_app.cache import KeyCache
from keys_app.errors import IntegrityError, KeyDisabled, KeyMaterialUnavailable, RootKeyError
from keys_app.models import Dek, KekVersion, Key, KeyState
from keys_app.services.root import rek_current, rek_unwrap, rek_wrap

_cache: KeyCache | None = None


def key_cache() -> KeyCache:
    """The process-wide cache of unwrapped KEKs and DEKs."""
    global _cache
    if _cache is None:
        _cache = KeyCache(settings.HKMS_KEY_CACHE_SIZE, settings.HKMS_KEY_CACHE_SECONDS)
    return _cache


def dek_context(dek_id: object, key_id: object, kek_version: int) -> bytes:
    return crypto.aad("dek", str(dek_id), str(key_id), kek_version)


# --- KEK level ---------------------------------------------------------------------------
def kek_version_create(
    *, key_id: uuid.UUID, version: int, material: crypto.SecretBytes | None = None, algorithm: str = "aes_256_gcm"
) -> KekVersion:
    """Wrap ``material`` (a fresh AES-256 key by default) under the current REK and store it.

    Idempotent per ``(key_id, version)``: if that version exists (a crashed
    earlier attempt), it is returned unchanged.
    """
    existing = KekVersion.objects.using("kek").filter(key_id=key_id, version=version).first()
    if existing is not None:
        return existing
    rek = rek_current()
    material = material or crypto.generate_key()
    wrapped = rek_wrap(rek, material, key_id=key_id, kek_version=version)
    try:
        with transaction.atomic(using="kek"):
            return KekVersion.objects.using("kek").create(
                key_id=key_id, version=version, algorithm=algorithm, wrapped_material=wrapped, rek_version=rek.version
            )
    except DbIntegrityError:
        # Another process created the same version first: use theirs.
        return KekVersion.objects.using("kek").get(key_id=key_id, version=version)


def key_create_with_material(
    *, project: Any, name: str, material: crypto.SecretBytes | None = None, **fields: Any
) -> Key:
    """Create a key: KEK version 1 on kek first, then the ``Key`` row on default."""
    key_id = uuid.uuid4()
    algorithm = fields.get("algorithm", "aes_256_gcm")
    if fields.get("state") != KeyState.PENDING_KEY_MATERIAL:
        kek_version_create(key_id=key_id, version=1, material=material, algorithm=algorithm)
    return Key.objects.create(id=key_id, project=project, name=name, **fields)


def key_require_enabled(key: Key) -> None:
    if key.state != KeyState.ENABLED:
        raise KeyDisabled(key.id, key.state)


def kek_material(key_id: uuid.UUID, version: int) -> crypto.SecretBytes:
    """The unwrapped material of one KEK version (cached, bounded)."""
    cache = key_cache()
    name = ("kek", key_id, version)
    cached = cache.get(name)
    if cached is not None:
        return cached
    row = KekVersion.objects.using("kek").filter(key_id=key_id, version=version).first()
    if row is None or row.state == KekVersion.State.DESTROYED or row.wrapped_material is None:
        raise KeyMaterialUnavailable(f"version {version} of key {key_id} does not exist or was destroyed")
    try:
        material = rek_unwrap(row.rek_version, bytes(row.wrapped_material), key_id=key_id, kek_version=version)
    except (RootKeyError, IntegrityError):
        # A root key rotation may have re-wrapped this row, and retired the REK version we
        # read it under, between our read and the unwrap: read the row once more.
        fresh = KekVersion.objects.using("kek").filter(id=row.id).values("rek_version", "wrapped_material").first()
        if fresh is None or fresh["rek_version"] == row.rek_version or fresh["wrapped_material"] is None:
            raise
        material = rek_unwrap(
            fresh["rek_version"], bytes(fresh["wrapped_material"]), key_id=key_id, kek_version=version
        )
    cache.put(name, str(key_id), material)
    return material


def key_set_state(key: Key, state: str) -> None:
    """Enable or disable a key; drops its cached material in this process at once."""
    Key.objects.filter(id=key.id).update(state=state, updated_at=timezone.now())
    key.state = state
    key_cache().drop_owner(str(key.id))


# --- DEK level ---------------------------------------------------------------------------
def dek_wrap(key_id: uuid.UUID, kek_version: int, dek_id: uuid.UUID, material: crypto.SecretBytes) -> bytes:
    kek = kek_material(key_id, kek_version)
    return crypto.seal(
        kek, material.reveal(), context=dek_context(dek_id, key_id, kek_version), key_version=kek_version
    )


def dek_unwrap(row: Dek) -> crypto.SecretBytes:
    return dek_unwrap_raw(row.id, row.key_id, row.kek_version, bytes(row.wrapped))


def dek_unwrap_raw(dek_id: uuid.UUID, key_id: uuid.UUID, kek_version: int, wrapped: bytes) -> crypto.SecretBytes:
    """Open one wrapped DEK (no state check: callers decide whether the key may be used)."""
    kek = kek_material(key_id, kek_version)
    try:
        raw = crypto.open_(kek, bytes(wrapped), context=dek_context(dek_id, key_id, kek_version))
    except crypto.InvalidCiphertext:
        raise IntegrityError(
            f"DEK {dek_id} failed authentication under version {kek_version} of key {key_id} (tampered or moved)"
        ) from None
    return crypto.SecretBytes(raw)


def dek_create(*, key: Key, owner_id: uuid.UUID | None) -> tuple[Dek, crypto.SecretBytes]:
    """A fresh DEK wrapped by the key's primary KEK version, committed on the dek database."""
    key_require_enabled(key)
    dek_id = uuid.uuid4()
    material = crypto.generate_key()
    wrapped = dek_wrap(key.id, key.primary_version, dek_id, material)
    row = Dek.objects.using("dek").create(
        id=dek_id, key_id=key.id, kek_version=key.primary_version, wrapped=wrapped, owner_id=owner_id
    )
    key_cache().put(("dek", dek_id), str(key.id), material, tag=key.primary_version)
    return row, material


def dek_material(*, key: Key, dek_id: uuid.UUID) -> crypto.SecretBytes:
    """Unwrap one DEK of ``key``; refuses when the key is not enabled.

    At most one query on the dek database and one on the kek database, none
    when the material is cached.  Cached DEKs are tagged with the key's
    primary version, read fresh with the key on every use: when another
    process rotates the key or replaces its material (delete_key_material then
    import), this process's cached DEKs of that key stop being used at once.
    """
    key_require_enabled(key)
    cache = key_cache()
    cached = cache.get(("dek", dek_id), tag=key.primary_version)
    if cached is not None:
        return cached
    row = Dek.objects.using("dek").filter(id=dek_id).first()
    if row is None:
        raise KeyMaterialUnavailable(f"DEK {dek_id} does not exist (destroyed or missing)")
    if row.key_id != key.id:
        raise IntegrityError(f"DEK {dek_id} belongs to key {row.key_id}, not to key {key.id}")
    material = dek_unwrap(row)
    cache.put(("dek", dek_id), str(key.id), material, tag=key.primary_version)
    return material


def deks_destroy(dek_ids: Iterable[uuid.UUID]) -> int:
    """Delete DEK rows for good (crypto-shredding of what they protected)."""
    ids = [i for i in dek_ids if i is not None]
    if not ids:
        return 0
    cache = key_cache()
    for dek_id in ids:
        cache.drop_name(("dek", dek_id))
    deleted, _ = Dek.objects.using("dek").filter(id__in=ids).delete()
    return deleted
