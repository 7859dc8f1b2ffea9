"""Rotation follow-ups and operator services: DEK re-wraps, due rotations, purges.

``key_rewrap_deks`` is the one re-wrap action of the console and ``rewrap_deks --key``
(``KEY_ADMIN``).  Due rotations (``run_due_rotations``) and purges (``purge_deleted_keys``)
are run by commands, superusers (the command principal) only.  Due rotations are one conditional ``UPDATE``
per key, so racing runs rotate each key exactly once; a purge locks the key row,
re-checks it is still due, shreds (kek, dek) and deletes, with its audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, grants_forget
from hkms_core.audit.services import audit_record
from hkms_core.errors import Conflict
from hkms_core.lifecycle import DELETION_DELAY
from keys_app.errors import HierarchyError
from keys_app.models import Key, KeyOrigin, KeyState, KeyUsage, RotationJob
from keys_app.services.exposure import key_exposure_report, key_is_referenced
from keys_app.services.jobs import JobBusy, Progress, job_running
from keys_app.services.keys.key_material import shred_key_material
from keys_app.services.keys.permissions import current_time, require_operator
from keys_app.services.projects import key_is_a_project_default
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
    errors: list[dict[str, Any]] = []
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
            except JobBusy as exc:  # another process re-wraps this key now: the rotation stands
                errors.append({"key_id": str(key.id), "error": f"rotated, but not re-wrapped: {exc}", "busy": True})
            except HierarchyError as exc:
                errors.append({"key_id": str(key.id), "error": f"rotated, but re-wrapping failed: {exc}"})
        rotated.append(entry)
    return {"now": now.isoformat(), "rotated": rotated, "skipped_rotated_elsewhere": skipped, "errors": errors}


REWRAP_EVENT = "key.rewrap_deks"


def key_rewrap_deks(
    *,
    principal: Principal,
    key: Key,
    runner: str = "inline",
    start: Callable[[Key], None] | None = None,
    refuse_if_running: bool = False,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Re-wrap ``key``'s DEKs under its primary version: the one action behind the console and ``rewrap_deks --key``.

    Needs ``KEY_ADMIN`` on the key (a refusal is audited as ``denied``); with
    ``refuse_if_running`` a re-wrap of the key whose lease is alive is a
    ``Conflict`` (the console says so rather than start a process that would
    wait).  The ``key.rewrap_deks`` event (with ``runner``) commits before the
    work starts (``runner`` only names who runs it: ``inline``, ``process``,
    ``command``).  Without ``start`` the resumable job runs here
    (``rotation.kek.deks_rewrap``) and its result is returned; with one, the
    key is handed to it (the console's detached process, which runs
    ``rewrap_deks --key``) and ``{"runner": runner}`` is returned.
    """
    authorize_audited(principal, Action.KEY_ADMIN, key, REWRAP_EVENT)
    if refuse_if_running:
        running = job_running(RotationJob.Kind.REWRAP_DEKS, f"key:{key.id}")
        if running is not None and running.lease_until is not None and running.lease_until > timezone.now():
            raise Conflict(f"a re-wrap of key {key.name} is already running ({running.processed}/{running.total})")
    with transaction.atomic():
        audit_record(principal, REWRAP_EVENT, key, runner=runner)
    if start is None:
        return deks_rewrap(key=key, batch_size=batch_size, progress=progress)
    start(key)
    return {"runner": runner}


def keys_purge_deleted(*, principal: Principal, now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Crypto-shred keys whose deletion became final (scheduled more than 7 days ago).

    Per key: the exposure report is taken first (what is being destroyed);
    then, with the key row locked and still due (re-checked under the lock),
    the versions are destroyed on kek and the DEKs deleted on dek (``shred_key_material``,
    committed there), then on default its role grants go and the row is
    deleted -- or kept, invisible, while a secret still names it (the reference
    check of ``keys_app.services.exposure``) or a project names it as its default
    key (``key_delete`` refuses to schedule a default key; this keeps the rule of
    keys_app.services.projects even for a key scheduled some other way, as the
    old ``PROTECT`` foreign key did) -- with the audit event.  A crash after the
    shredding leaves a due key that the next run purges again.  Idempotent.
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
            # a secret still names it (keys_app.services.exposure), or a project names it as its default
            # key (keys_app.services.projects: a default key id always resolves to a row, as PROTECT did)
            kept = key_is_referenced(key.id) or key_is_a_project_default(key.id)
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
    "key_rewrap_deks",
    "keys_due_for_rotation",
    "keys_purge_deleted",
    "keys_rotate_due",
]
