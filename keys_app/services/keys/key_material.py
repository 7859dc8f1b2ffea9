"""Imported key material and crypto-shredding (Scaleway's ImportKeyMaterial, DeleteKeyMaterial).

Shredding destroys every KEK version on kek, then the key's DEKs on dek: nothing
encrypted under the key can be decrypted again, backups of default and dek included.
What it reaches beyond the hierarchy (secrets) comes from ``keys_app.services.exposure``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PreconditionFailed
from keys_app import asymmetric
from keys_app.models import Dek, KekVersion, Key, KeyOrigin, KeyState
from keys_app.services.exposure import key_exposure_report
from keys_app.services.keys.permissions import failures_audited, key_for, key_lock
from keys_app.services.material import (
    kek_version_create,
    key_cache,
    key_set_state,
)


def shred_key_material(key: Key) -> dict[str, int]:
    """Destroy every version of ``key`` on kek, then its DEKs on dek (idempotent).

    After this nothing encrypted under the key -- Key Manager ciphertexts,
    data keys, secret versions -- can be decrypted again, backups of the
    default and dek databases included.
    """
    key_cache().drop_owner(str(key.id))
    destroyed = (
        KekVersion.objects.using("kek")
        .filter(key_id=key.id)
        .exclude(state=KekVersion.State.DESTROYED)
        .update(state=KekVersion.State.DESTROYED, wrapped_material=None, destroyed_at=timezone.now())
    )
    deks, _ = Dek.objects.using("dek").filter(key_id=key.id).delete()
    key_cache().drop_owner(str(key.id))
    return {"kek_versions_destroyed": destroyed, "deks_destroyed": deks}


def _exposure_detail(key: Key) -> dict[str, Any]:
    report = key_exposure_report(key)
    return {
        "kek_versions": report["kek_versions"],
        "secrets": len(report["secrets"]),
        "secret_versions": report["secret_versions"],
    }


def key_import_key_material(
    *, principal: Principal, key_id: Any, key_material: bytes, salt: bytes | None = None, region: str | None = None
) -> Key:
    """Give an ``external`` key its material: 32 bytes, used through HKDF-SHA256 (optional salt).

    The key goes from ``pending_key_material`` to ``enabled`` with a new
    version (one past every version it ever had, so material left by a crashed
    attempt is never reused).  Order: the key row is locked on default, the
    version commits on kek, then the state and primary version commit with
    the audit event; concurrent imports are serialised by the row lock.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.import_key_material", region=region)
    with failures_audited(principal, "key.import_key_material", key):
        if key.origin != KeyOrigin.EXTERNAL:
            raise PreconditionFailed("key_origin", f"key {key.id} was not created with origin external")
        if salt is not None and len(salt) > 1024:
            raise InvalidArgument("salt", "must be at most 1024 bytes")
        try:
            derived = asymmetric.derive_imported_key(key_material or b"", salt)
        except ValueError as exc:
            raise InvalidArgument("key_material", str(exc)) from None
        with transaction.atomic():
            key = key_lock(key)
            if key.state != KeyState.PENDING_KEY_MATERIAL:
                raise PreconditionFailed(
                    "key_state", f"key {key.id} already has key material: delete it before importing new material"
                )
            shred_key_material(key)  # leftovers of an interrupted delete_key_material
            versions = KekVersion.objects.using("kek").filter(key_id=key.id).values_list("version", flat=True)
            version = max(versions, default=0) + 1
            kek_version_create(key_id=key.id, version=version, material=derived, algorithm=key.algorithm)
            key.primary_version, key.state = version, KeyState.ENABLED
            key.save(update_fields=["primary_version", "state", "updated_at"])
            audit_record(principal, "key.import_key_material", key, version=version, salted=bool(salt))
    return key


def key_delete_key_material(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Crypto-shred an ``external`` key's material and everything under it; the key waits for new material.

    Order: the state becomes ``pending_key_material`` (with an audit event
    carrying the exposure summary) on default first, so nothing uses the key
    any more; then the versions are destroyed on kek and the DEKs deleted on
    dek.  A crash in between leaves an unusable key; running this again, or
    importing new material, finishes the shredding.  Refused (412 ``key_protected``)
    while the key is protected, like ``key_delete``: protection blocks every route to
    destruction.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.delete_key_material", region=region)
    with failures_audited(principal, "key.delete_key_material", key):
        if key.origin != KeyOrigin.EXTERNAL:
            raise PreconditionFailed("key_origin", f"key {key.id} was not created with origin external")
        with transaction.atomic():
            key = key_lock(key)
            if key.state == KeyState.SCHEDULED_FOR_DELETION:
                raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
            if key.protected:  # protection blocks every route to destruction (THREAT_MODEL.md)
                raise PreconditionFailed(
                    "key_protected", f"key {key.id} is protected: unprotect it before deleting its material"
                )
            key_set_state(key, KeyState.PENDING_KEY_MATERIAL)
            audit_record(principal, "key.delete_key_material", key, **_exposure_detail(key))
        shred_key_material(key)
    return key


__all__ = [
    "key_delete_key_material",
    "key_import_key_material",
]
