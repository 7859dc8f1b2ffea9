"""Which retired REK versions keep their material: those a retained backup needs.

The rule that keeps old backups decryptable after ``rotate_root_key``:

- ``backup`` records (``BackupRecord``, kek database) the REK versions its KEK
  table is wrapped by, and commits that record *before* it snapshots the kek
  database;
- retiring a REK version (``keys_app.services.root.rek_retire``) marks it
  retired but destroys its material in the provider only if no retained backup
  names it (:func:`rek_version_retained`);
- ``forget_backup`` marks a backup forgotten and destroys the material of every
  retired version that no retained backup needs any more
  (:func:`rek_release_unneeded`), which makes the forgotten backup (and any copy
  of it) undecryptable: crypto-shredding for backups.

Without backups the behaviour is what it was: a retired version is destroyed at once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from hkms_core.audit.services import audit_record
from hkms_core.errors import ObjectNotFound
from hkms_site.backup.models import BackupRecord
from keys_app.errors import RootKeyError
from keys_app.models import RootKeyVersion
from keys_app.providers import RootKeyUnavailable, get_provider
from keys_app.services.root import forget_verified_root_keys


def rek_versions_retained(*, excluding: Any = None) -> set[int]:
    """REK versions named by a retained backup (other than ``excluding``, a backup id)."""
    retained: set[int] = set()
    records = BackupRecord.objects.using("kek").filter(state=BackupRecord.State.RETAINED)
    if excluding is not None:
        records = records.exclude(id=excluding)
    for versions in records.values_list("rek_versions", flat=True):
        retained.update(int(v) for v in versions)
    return retained


def rek_version_retained(version: int) -> bool:
    return version in rek_versions_retained()


def rek_release_unneeded(*, dry_run: bool = False, excluding: Any = None) -> list[int]:
    """Destroy the provider material of retired REK versions that no retained backup needs.

    Idempotent (a version whose material is already gone is skipped), so a crash
    part-way is finished by the next ``forget_backup``.  Returns the versions destroyed.
    """
    retained = rek_versions_retained(excluding=excluding)
    destroyed = []
    for row in RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.RETIRED).order_by("version"):
        if row.version in retained:
            continue
        try:
            provider = get_provider(row.provider)
            if not provider.has_version(row.version):
                continue
            if not dry_run:
                provider.destroy_version(row.version)
        except RootKeyUnavailable as exc:
            raise RootKeyError(str(exc)) from None
        destroyed.append(row.version)
    if destroyed and not dry_run:
        forget_verified_root_keys()
    return destroyed


def backup_forget(*, principal: Any, backup_id: Any, dry_run: bool = False) -> dict[str, Any]:
    """Stop retaining a backup; destroy the retired REK material only it needed.

    The record is marked forgotten (and audited) first, then material is
    destroyed: a crash in between leaves material that the next run destroys.
    """
    record = BackupRecord.objects.using("kek").filter(id=backup_id).first()
    if record is None:
        raise ObjectNotFound("backup", backup_id)
    if dry_run:
        doomed = rek_release_unneeded(dry_run=True, excluding=record.id)
        return {"backup_id": str(record.id), "dry_run": True, "would_destroy_rek_versions": doomed}
    with transaction.atomic(using="kek"):
        BackupRecord.objects.using("kek").filter(id=record.id).update(
            state=BackupRecord.State.FORGOTTEN, forgotten_at=timezone.now()
        )
    with transaction.atomic():
        audit_record(principal, "backup.forget", ("backup", record.id, ""), rek_versions=list(record.rek_versions))
    destroyed = rek_release_unneeded()
    return {"backup_id": str(record.id), "destroyed_rek_versions": destroyed}


def backup_records() -> list[dict[str, Any]]:
    return [
        {
            "id": str(r.id),
            "created_at": r.created_at.isoformat(),
            "state": r.state,
            "rek_versions": list(r.rek_versions),
            "archive": r.archive,
            "sha256": r.sha256,
        }
        for r in BackupRecord.objects.using("kek").order_by("created_at")
    ]
