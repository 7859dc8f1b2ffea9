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
from keys_app.errors import IntegrityCheckFailed, KeyDisabled, KeyMaterialUnavailable, RootKeyError
from keys_app.models import Dek, KekVersion, Key, KeyState, RootKeyVersion
from keys_app.providers import on_seal
from keys_app.services.root import rek_current, rek_unwrap, rek_wrap

_cache: KeyCache | None = None


def key_cache() -> KeyCache:
    """The process-wide cache of unwrapped KEKs and DEKs."""
    global _cache
    if _cache is None:
        _cache = KeyCache(settings.HKMS_KEY_CACHE_SIZE, settings.HKMS_KEY_CACHE_SECONDS)
    return _cache


def _drop_cache_on_seal() -> None:
    key_cache().clear()


on_seal(_drop_cache_on_seal)


def dek_context(dek_id: object, key_id: object, kek_version: int) -> bytes:
    return crypto.aad("dek", str(dek_id), str(key_id), kek_version)


# --- KEK level ---------------------------------------------------------------------------
#: Rounds of "re-read the current REK version, re-wrap" before giving up (each round needs a
#: root key rotation to complete between two reads: in practice one round, two at most).
FENCE_ROUNDS = 20


def kek_version_create(
    *, key_id: uuid.UUID, version: int, material: crypto.SecretBytes | None = None, algorithm: str = "aes_256_gcm"
) -> KekVersion:
    """Wrap ``material`` (a fresh AES-256 key by default) under the current REK and store it.

    Idempotent per ``(key_id, version)``: if that version exists (a crashed or
    concurrent earlier attempt), it is adopted, after the same fence as a new row.

    **The REK fence ("publish, then validate").**  A root key rotation
    (``rotation.rek.rek_rotate``) first *commits* its new REK version, which makes it
    current, then re-wraps every KEK row not under it, and retires an old
    version only after a scan that starts after that commit finds no row under
    it.  A creator here commits its row under the REK version ``v`` it read,
    then re-reads the current version (:func:`kek_version_fence`):

    * still ``v``: the new version was not committed when we re-read, so every
      scan of the rotation starts after our commit and sees our row (re-wraps
      it, or keeps ``v`` alive); nothing more to do;
    * another version ``c``: the rotation may have passed us; we re-wrap our own
      row under ``c`` by compare-and-set (``WHERE rek_version = v``; we still
      hold the plaintext material, so ``v`` need not exist any more), and
      validate again.  A lost compare-and-set means the rotation re-wrapped the
      row first: re-read it and validate that.

    Callers publish a reference to the version (the ``Key`` row, ``primary_version``)
    only after this returns, so a row whose creator died before validating is
    never referenced; :func:`_kek_adopt` replaces such a row when its REK version
    is retired, and ``verify_hierarchy --repair`` removes it.  Reads need no
    lock and no long transaction: the fence costs one indexed read of the REK
    table per creation.  Works across processes and machines on both engines,
    because it relies only on committed reads of the kek database.
    """
    for _ in range(FENCE_ROUNDS):
        existing = KekVersion.objects.using("kek").filter(key_id=key_id, version=version).first()
        if existing is not None:
            adopted = _kek_adopt(existing, material)
            if adopted is not None:
                return adopted
            continue  # the leftover was removed: create the version afresh
        material = material or crypto.generate_key()
        rek = rek_current()
        try:
            wrapped = rek_wrap(rek, material, key_id=key_id, kek_version=version)
        except RootKeyError:
            if rek_current().version != rek.version:
                continue  # a rotation retired the version we read meanwhile: wrap under the new one
            raise
        try:
            with transaction.atomic(using="kek"):
                row = KekVersion.objects.using("kek").create(
                    key_id=key_id,
                    version=version,
                    algorithm=algorithm,
                    wrapped_material=wrapped,
                    rek_version=rek.version,
                )
        except DbIntegrityError:
            continue  # another process created the same version first: adopt theirs (next round)
        fenced = kek_version_fence(row, material)
        if fenced is not None:
            return fenced
    raise RootKeyError(f"could not store version {version} of key {key_id}: the root key kept rotating")


def kek_version_fence(row: KekVersion, material: crypto.SecretBytes) -> KekVersion | None:
    """Make sure committed ``row`` is under a REK version no rotation will retire (see above).

    Returns the row as it ends up, or None when it was deleted meanwhile (by
    ``verify_hierarchy --repair`` or a concurrent adopter, which happens only to
    rows under a retired REK version): the caller creates it afresh.
    """
    for _ in range(FENCE_ROUNDS):
        current = rek_current()
        if row.rek_version == current.version:
            return row
        wrapped = rek_wrap(current, material, key_id=row.key_id, kek_version=row.version)
        with transaction.atomic(using="kek"):
            moved = (
                KekVersion.objects.using("kek")
                .filter(id=row.id, rek_version=row.rek_version)
                .exclude(state=KekVersion.State.DESTROYED)
                .update(wrapped_material=wrapped, rek_version=current.version)
            )
        fresh = KekVersion.objects.using("kek").filter(id=row.id).first()
        if fresh is None:
            return None
        if moved:
            key_cache().drop_name(("kek", row.key_id, row.version))
        row = fresh
        if row.state == KekVersion.State.DESTROYED:
            return row
    raise RootKeyError(f"version {row.version} of key {row.key_id}: the root key kept rotating")


def _kek_adopt(row: KekVersion, material: crypto.SecretBytes | None) -> KekVersion | None:
    """Fence an existing row left by an earlier or concurrent attempt; None when it was removed.

    A row under an older REK version is unwrapped and re-wrapped (the material
    we were given, if any, is *not* substituted: the stored row wins).  A row
    under a REK version that is retired cannot be unwrapped any more: its
    creator died before its fence, so (see :func:`kek_version_create`) nothing
    references it, and it is deleted by compare-and-set for the caller to
    create afresh.
    """
    if row.state == KekVersion.State.DESTROYED or row.wrapped_material is None:
        return row
    if row.rek_version == rek_current().version:
        return row
    rek_row = RootKeyVersion.objects.using("kek").filter(version=row.rek_version).first()
    if rek_row is None or rek_row.state == RootKeyVersion.State.RETIRED:
        KekVersion.objects.using("kek").filter(id=row.id, rek_version=row.rek_version).delete()
        return None
    try:
        existing = rek_unwrap(row.rek_version, bytes(row.wrapped_material), key_id=row.key_id, kek_version=row.version)
    except (RootKeyError, IntegrityCheckFailed):
        fresh = KekVersion.objects.using("kek").filter(id=row.id).first()
        if fresh is None:
            return None
        if fresh.rek_version != row.rek_version:
            return _kek_adopt(fresh, material)  # re-wrapped by a rotation meanwhile
        raise
    return kek_version_fence(row, existing)


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
    except (RootKeyError, IntegrityCheckFailed):
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
        raise IntegrityCheckFailed(
            f"DEK {dek_id} failed authentication under version {kek_version} of key {key_id} (tampered or moved)"
        ) from None
    return crypto.SecretBytes(raw)


def dek_create(*, key: Key, owner_id: uuid.UUID | None) -> tuple[Dek, crypto.SecretBytes]:
    """A fresh DEK wrapped by the key's primary KEK version, committed on the dek database.

    ``key.primary_version`` may be stale (read by the caller before a
    rotation): the DEK is fenced after its commit (:func:`deks_fence`), so it
    never stays wrapped under a version that ``revoke_key`` destroys.
    """
    key_require_enabled(key)
    dek_id = uuid.uuid4()
    material = crypto.generate_key()
    version = key.primary_version
    for _ in range(FENCE_ROUNDS):
        try:
            wrapped = dek_wrap(key.id, version, dek_id, material)
            break
        except KeyMaterialUnavailable:
            fresh = key_primary_version(key.id)
            if fresh is None or fresh == version:
                raise
            version = fresh  # revoked meanwhile: wrap under the new primary version
    else:
        raise KeyMaterialUnavailable(f"key {key.id} kept rotating while a DEK was created")
    row = Dek.objects.using("dek").create(
        id=dek_id, key_id=key.id, kek_version=version, wrapped=wrapped, owner_id=owner_id
    )
    fenced = deks_fence(key_id=key.id, deks={dek_id: (version, material)})
    if fenced is not None and fenced != version:
        row.kek_version = fenced
        key.primary_version = fenced
    key_cache().put(("dek", dek_id), str(key.id), material, tag=key.primary_version)
    return row, material


def key_primary_version(key_id: uuid.UUID) -> int | None:
    """The key's primary KEK version as committed now (None: no such key)."""
    return Key.objects.filter(id=key_id).values_list("primary_version", flat=True).first()


def deks_fence(*, key_id: uuid.UUID, deks: dict[uuid.UUID, tuple[int, crypto.SecretBytes]]) -> int | None:
    """Fence committed DEKs (``{dek_id: (kek_version, material)}``) against revocation.

    **The KEK fence ("publish, then validate", as for the REK).**  A rotation
    publishes the new primary version on default (compare-and-set of
    ``primary_version``) *before* anything is re-wrapped, and ``revoke_key``
    destroys a version only after a scan of the dek database, started after
    that publication, finds no DEK under it.  Here, after our DEKs are committed,
    the primary version is re-read:

    * equal to the version a DEK is wrapped under: the publication of a newer
      one comes after our commit, so every destroying scan sees the DEK;
    * newer: the revocation may have passed us; the DEK is re-wrapped under the
      new primary version from its plaintext (which we hold, so the old KEK
      version need not exist any more) by compare-and-set on ``kek_version``,
      then validated again.  A lost compare-and-set means ``rewrap_deks`` moved
      it first; a vanished row was destroyed (its version was deleted).

    Returns the primary version every DEK ends under (None when the key is gone).
    """
    pending = dict(deks)
    cache = key_cache()
    for _ in range(FENCE_ROUNDS):
        primary = key_primary_version(key_id)
        if primary is None:
            return None
        late = {dek_id: entry for dek_id, entry in pending.items() if entry[0] != primary}
        if not late:
            return primary
        kek = kek_material(key_id, primary)
        with transaction.atomic(using="dek"):
            for dek_id, (version, material) in late.items():
                wrapped = crypto.seal(
                    kek, material.reveal(), context=dek_context(dek_id, key_id, primary), key_version=primary
                )
                Dek.objects.using("dek").filter(id=dek_id, kek_version=version).update(
                    wrapped=wrapped, kek_version=primary
                )
        for dek_id in late:
            cache.drop_name(("dek", dek_id))
        now = dict(Dek.objects.using("dek").filter(id__in=list(late)).values_list("id", "kek_version"))
        pending = {dek_id: (now[dek_id], entry[1]) for dek_id, entry in late.items() if dek_id in now}
    raise KeyMaterialUnavailable(f"key {key_id} kept rotating while its DEKs were fenced")


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
        raise IntegrityCheckFailed(f"DEK {dek_id} belongs to key {row.key_id}, not to key {key.id}")
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
