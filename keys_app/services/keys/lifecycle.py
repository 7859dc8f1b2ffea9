"""Key lifecycle: delete (scheduled), restore, protect, enable, disable, rotate.

Each action locks the key row on default, checks its precondition, changes the row and
records the audit event in one transaction (the ``key_delete`` pattern).  ``key_rotate``
commits the new KEK version on kek first, then moves the primary version by
compare-and-set (``keys_app.services.rotation.kek``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.audit.services import audit_record
from hkms_core.errors import PreconditionFailed
from hkms_core.lifecycle import DELETION_DELAY
from keys_app.models import Key, KeyOrigin, KeyState, KeyUsage
from keys_app.services.keys.permissions import current_time, failures_audited, key_for, key_lock
from keys_app.services.material import (
    key_cache,
    key_set_state,
)
from keys_app.services.projects import key_is_a_project_default
from keys_app.services.rotation.kek import kek_rotate


def key_delete(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """Schedule deletion in :data:`DELETION_DELAY`; the key stops working at once.

    Refused for protected keys and for a project's default key.  Idempotent.
    Secrets protected by the key become unreadable (the key is not enabled)
    and, once the deletion is final and ``purge_deleted_keys`` ran, are
    crypto-shredded.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.delete", region=region, now=now)
    now = current_time(now)
    with failures_audited(principal, "key.delete", key), transaction.atomic():
        key = key_lock(key)
        if key.protected:
            raise PreconditionFailed("key_protected", f"key {key.id} is protected: unprotect it before deleting it")
        if key_is_a_project_default(key.id):
            raise PreconditionFailed("project_default_key", f"key {key.id} is its project's default key")
        if key.state != KeyState.SCHEDULED_FOR_DELETION:
            key.pre_deletion_state = key.state
            key.state, key.deletion_requested_at = KeyState.SCHEDULED_FOR_DELETION, now
            key.save(update_fields=["pre_deletion_state", "state", "deletion_requested_at", "updated_at"])
            key_cache().drop_owner(str(key.id))
        requested = key.deletion_requested_at or now
        audit_record(principal, "key.delete", key, final_at=(requested + DELETION_DELAY).isoformat())
    return key


def key_restore(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """Cancel a scheduled deletion; the key returns to the state it had before."""
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.restore", region=region, now=now)
    with failures_audited(principal, "key.restore", key), transaction.atomic():
        key = key_lock(key)
        if key.state != KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is not scheduled for deletion")
        key.state = key.pre_deletion_state or KeyState.DISABLED
        key.pre_deletion_state, key.deletion_requested_at = "", None
        key.save(update_fields=["state", "pre_deletion_state", "deletion_requested_at", "updated_at"])
        audit_record(principal, "key.restore", key, state=key.state)
    return key


def _set_protected(principal: Principal, key_id: Any, region: str | None, protected: bool) -> Key:
    event = "key.protect" if protected else "key.unprotect"
    key = key_for(principal, key_id, Action.KEY_ADMIN, event, region=region)
    with transaction.atomic():
        key = key_lock(key)
        key.protected = protected
        key.save(update_fields=["protected", "updated_at"])
        audit_record(principal, event, key)
    return key


def key_protect(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Protected keys cannot be deleted (they can be used and modified)."""
    return _set_protected(principal, key_id, region, True)


def key_unprotect(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    return _set_protected(principal, key_id, region, False)


def key_enable(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Enable a disabled key: encrypt, decrypt, data keys and its secrets work again."""
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.enable", region=region)
    with failures_audited(principal, "key.enable", key), transaction.atomic():
        key = key_lock(key)
        if key.state == KeyState.PENDING_KEY_MATERIAL:
            raise PreconditionFailed("key_state", f"key {key.id} has no key material: import it first")
        if key.state == KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
        key_set_state(key, KeyState.ENABLED)
        audit_record(principal, "key.enable", key)
    return key


def key_disable(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Disable a key: its uses and every secret it protects fail until it is enabled again.

    The unwrapped material is dropped from this process's cache at once; other
    processes re-read the key's state on every use.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.disable", region=region)
    with failures_audited(principal, "key.disable", key), transaction.atomic():
        key = key_lock(key)
        if key.state not in (KeyState.ENABLED, KeyState.DISABLED):
            raise PreconditionFailed("key_state", f"key {key.id} is {key.state}: only enabled keys can be disabled")
        key_set_state(key, KeyState.DISABLED)
        audit_record(principal, "key.disable", key)
    return key


def key_rotate(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """A new version becomes primary (``kek_rotate``); older versions still decrypt.

    Only symmetric keys whose material Key Manager generated rotate
    (asymmetric keys: create a new key; external keys: delete and import
    material).  DEKs of secrets under the key stay wrapped by the old version
    until ``rewrap_deks`` runs.  Order: the new version commits on kek, then the
    primary version moves (compare-and-set) with its audit event on default.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.rotate", region=region, now=now)
    with failures_audited(principal, "key.rotate", key):
        if key.usage != KeyUsage.SYMMETRIC_ENCRYPTION or key.origin != KeyOrigin.SCALEWAY_KMS:
            raise PreconditionFailed(
                "key_usage", f"key {key.id} cannot be rotated: only symmetric keys generated by Key Manager rotate"
            )
        with transaction.atomic():
            key = key_lock(key)
            if key.state not in (KeyState.ENABLED, KeyState.DISABLED):
                raise PreconditionFailed("key_state", f"key {key.id} is {key.state}: it cannot be rotated")
            key = kek_rotate(key=key, now=now)
            audit_record(principal, "key.rotate", key, version=key.primary_version)
    return key


__all__ = [
    "key_delete",
    "key_disable",
    "key_enable",
    "key_protect",
    "key_restore",
    "key_rotate",
    "key_unprotect",
]
