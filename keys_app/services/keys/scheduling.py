"""Operator services run by commands: due rotations (``run_due_rotations``) and purges (``purge_deleted_keys``).

Superusers (the command principal) only.  Due rotations are one conditional ``UPDATE``
per key, so racing runs rotate each key exactly once; a purge locks the key row,
re-checks it is still due, shreds (kek, dek) and deletes, with its audit event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from hkms_core.access.principal import Principal
from hkms_core.access.services import grants_forget
from hkms_core.audit.services import audit_record
from keys_app.errors import HierarchyError
from keys_app.models import Key, KeyOrigin, KeyState, KeyUsage
from keys_app.services.exposure import key_exposure_report, key_is_referenced
from keys_app.services.keys.key_material import shred_key_material
from keys_app.services.keys.limits import DELETION_DELAY
from keys_app.services.keys.permissions import current_time, require_operator
from keys_app.services.rotation.kek import deks_rewrap, kek_rotate_cas


def keys_due_for_rotation(now: datetime | None = None) -> QuerySet[Key]:
    """Enabled symmetric Key Manager keys whose ``next_rotation_at`` has passed."""
    return Key.objects.filter(
        state=KeyState.ENABLED,
        usage=KeyUsage.SYMMETRIC_ENCRYPTION,
        origin=KeyOrigin.SCALEWAY_KMS,
        rotation_period__isnull=False,
        next_rotation_at__lte=current_time(now),
    ).order_by("next_rotation_at", "id")


def keys_rotate_due(
    *,
    principal: Principal,
    now: datetime | None = None,
    rewrap: bool = False,
    dry_run: bool = False,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Rotate every key whose rotation is due, each exactly once however many runs race.

    For each due key, ``kek_rotate_cas(due_by=now)`` makes the due-check and
    the rotation one conditional ``UPDATE`` (with its audit event, in one
    transaction on default): a concurrent run -- another cron on another
    machine -- finds the row no longer due and skips it.  With ``rewrap`` the
    run that rotated a key then re-wraps its DEKs (``deks_rewrap``); a failure
    there is reported and left to ``rewrap_deks``, the rotation stands.
    """
    require_operator(principal, "key.rotate")
    now = current_time(now)
    due = list(keys_due_for_rotation(now))
    if dry_run:
        return {
            "dry_run": True,
            "now": now.isoformat(),
            "due": [
                {"key_id": str(k.id), "name": k.name, "next_rotation_at": k.next_rotation_at.isoformat()}
                for k in due
                if k.next_rotation_at is not None
            ],
        }
    rotated: list[dict[str, Any]] = []
    skipped: list[str] = []
    errors: list[dict[str, str]] = []
    for key in due:
        try:
            with transaction.atomic():
                won = kek_rotate_cas(key=key, now=now, due_by=now)
                if won:
                    audit_record(principal, "key.rotate", key, version=key.primary_version + 1, scheduled=True)
        except HierarchyError as exc:
            errors.append({"key_id": str(key.id), "error": str(exc)})
            continue
        if not won:
            skipped.append(str(key.id))
            continue
        key.refresh_from_db()
        entry: dict[str, Any] = {
            "key_id": str(key.id),
            "name": key.name,
            "primary_version": key.primary_version,
            "next_rotation_at": key.next_rotation_at.isoformat() if key.next_rotation_at else None,
        }
        if rewrap:
            try:
                entry["deks_rewrapped"] = deks_rewrap(key=key, batch_size=batch_size)["deks_rewrapped"]
            except HierarchyError as exc:
                errors.append({"key_id": str(key.id), "error": f"rotated, but re-wrapping failed: {exc}"})
        rotated.append(entry)
    return {"now": now.isoformat(), "rotated": rotated, "skipped_rotated_elsewhere": skipped, "errors": errors}


def keys_purge_deleted(*, principal: Principal, now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Crypto-shred keys whose deletion became final (scheduled more than 7 days ago).

    Per key: the exposure report is taken first (what is being destroyed);
    then, with the key row locked and still due (re-checked under the lock),
    the versions are destroyed on kek and the DEKs deleted on dek (``shred_key_material``,
    committed there), then on default its role grants go and the row is
    deleted -- or kept, invisible, while a secret still names it (the reference
    check of ``keys_app.services.exposure``) -- with the
    audit event.  A crash after the shredding leaves a due key that the next
    run purges again.  Idempotent.
    """
    require_operator(principal, "key.purge")
    now = current_time(now)
    due = list(
        Key.objects.filter(
            state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=now - DELETION_DELAY, protected=False
        ).order_by("deletion_requested_at", "id")
    )
    reports = [key_exposure_report(key) for key in due]
    if dry_run:
        return {"dry_run": True, "now": now.isoformat(), "keys": reports}
    purged = []
    for key, report in zip(due, reports, strict=True):
        with transaction.atomic():
            # The locking rule: lock the row, re-check that its deletion is still final, then shred
            # (kek and dek commit while the lock is held) and delete; a restore that won keeps the key.
            still_due = Key.objects.select_for_update().filter(
                id=key.id, state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=now - DELETION_DELAY
            )
            if still_due.values_list("id", flat=True).first() is None:
                continue
            shredded = shred_key_material(key)
            grants_forget(key)
            kept = key_is_referenced(key.id)  # a secret still names it (keys_app.services.exposure)
            audit_record(
                principal,
                "key.purge",
                ("key", key.id, key.project_id),
                secrets=len(report["secrets"]),
                secret_versions=report["secret_versions"],
                row_kept=kept,
            )
            if not kept:
                Key.objects.filter(id=key.id).delete()
        purged.append({**report, **shredded, "row_kept": kept})
    return {"now": now.isoformat(), "purged": purged}


__all__ = [
    "keys_due_for_rotation",
    "keys_purge_deleted",
    "keys_rotate_due",
]
