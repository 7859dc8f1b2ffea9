"""Helpers run inside a live server's environment (``manage.py shell -c``) by the shredding test.

``populate`` builds thousands of secret versions quickly: the same DEK
wrapping and payload sealing as ``storage.secret_version_create`` (so every
version is a real, readable version), but with bulk inserts, DEKs committed
on dek before the versions on default.  ``check`` reports, after the race,
what crypto-shredding must guarantee.  Both print one JSON object.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from keys_app import crypto
from keys_app.errors import HierarchyError
from keys_app.models import Dek
from keys_app.services.material import dek_unwrap_raw, dek_wrap
from keys_app.services.projects import project_create_with_default_key, project_default_key
from secrets_app import storage
from secrets_app.models import Secret, SecretVersion, VersionStatus

PAYLOAD = b"shred-me-%d"


def populate(*, secrets: int, versions: int, scheduled: int, deleted_secrets: int) -> None:
    """``secrets`` live secrets of ``versions`` versions each, the first ``scheduled`` of each
    scheduled for deletion 8 days ago, plus ``deleted_secrets`` secrets scheduled whole."""
    project = project_create_with_default_key(name=f"shred-{uuid.uuid4().hex[:6]}")
    key = project_default_key(project)
    assert key is not None
    past = timezone.now() - timedelta(days=8)
    deks: list[Dek] = []
    rows: list[SecretVersion] = []
    doomed: list[str] = []
    for s in range(secrets + deleted_secrets):
        whole = s >= secrets
        secret = Secret.objects.create(
            project=project,
            key=key,
            name=f"bulk-{s}",
            version_count=versions,
            deletion_requested_at=past if whole else None,
        )
        for revision in range(1, versions + 1):
            version_id, dek_id = uuid.uuid4(), uuid.uuid4()
            material = crypto.generate_key()
            deks.append(
                Dek(
                    id=dek_id,
                    key_id=key.id,
                    kek_version=key.primary_version,
                    owner_id=version_id,
                    wrapped=dek_wrap(key.id, key.primary_version, dek_id, material),
                )
            )
            doom = whole or revision <= scheduled
            rows.append(
                SecretVersion(
                    id=version_id,
                    secret=secret,
                    revision=revision,
                    dek_id=dek_id,
                    ciphertext=storage.payload_seal(
                        material=material,
                        data=PAYLOAD % revision,
                        secret_id=secret.id,
                        revision=revision,
                        dek_id=dek_id,
                    ),
                    status=VersionStatus.SCHEDULED_FOR_DELETION if doom else VersionStatus.ENABLED,
                    status_before_deletion=VersionStatus.ENABLED if doom else "",
                    deletion_requested_at=past if doom else None,
                )
            )
            if doom:
                doomed.append(str(version_id))
    with transaction.atomic(using="dek"):
        Dek.objects.using("dek").bulk_create(deks, batch_size=500)
    with transaction.atomic():
        SecretVersion.objects.bulk_create(rows, batch_size=500)
    print(json.dumps({"doomed": doomed, "total": len(rows), "key_id": str(key.id)}))


def _dek_rows(copy: str | None, key_id: uuid.UUID) -> list[tuple[uuid.UUID, uuid.UUID | None, uuid.UUID, int, bytes]]:
    """(id, owner_id, key_id, kek_version, wrapped) of the key's DEKs: from a file copy (SQLite) or the database."""
    if copy is None:
        rows = Dek.objects.using("dek").filter(key_id=key_id)
        return list(rows.values_list("id", "owner_id", "key_id", "kek_version", "wrapped"))
    table = Dek._meta.db_table
    with sqlite3.connect(copy) as conn:
        raw = conn.execute(f"SELECT id, owner_id, key_id, kek_version, wrapped FROM {table}").fetchall()  # noqa: S608
    rows_ = [(uuid.UUID(i), uuid.UUID(o) if o else None, uuid.UUID(k), v, bytes(w)) for i, o, k, v, w in raw]
    return [row for row in rows_ if row[2] == key_id]


def check(*, doomed: list[str], copy: str | None, key_id: str) -> None:
    """What is left of the versions of secrets under ``key_id`` (the populated project's key)."""
    doomed_ids = {uuid.UUID(v) for v in doomed}
    mine = SecretVersion.objects.filter(secret__key_id=key_id)
    versions = {row[0]: row for row in mine.values_list("id", "status", "dek_id", "ciphertext")}
    live_refs = {dek for _, status, dek, _ in versions.values() if dek is not None and status != VersionStatus.DELETED}
    rows = _dek_rows(copy, uuid.UUID(key_id))
    unwrapped_of_destroyed = 0
    for dek_id, owner, key_id, kek_version, wrapped in rows:
        if owner in doomed_ids or dek_id not in live_refs:
            try:
                dek_unwrap_raw(dek_id, key_id, kek_version, wrapped)
                unwrapped_of_destroyed += owner in doomed_ids
            except HierarchyError:
                pass
    not_destroyed = [
        str(v)
        for v in doomed_ids
        if v in versions and (versions[v][1] != VersionStatus.DELETED or versions[v][2] or versions[v][3])
    ]
    survivors = [v for v in versions.values() if v[0] not in doomed_ids]
    unreadable = 0
    for version in SecretVersion.objects.select_related("secret__key").filter(id__in=[v[0] for v in survivors]):
        try:
            storage.secret_version_payload(version)
        except HierarchyError:
            unreadable += 1
    result: dict[str, Any] = {
        "dek_rows": len(rows),
        "unreferenced_deks": sum(1 for row in rows if row[0] not in live_refs),
        "deks_owned_by_destroyed": sum(1 for row in rows if row[1] in doomed_ids),
        "unwrapped_of_destroyed": unwrapped_of_destroyed,
        "not_destroyed": len(not_destroyed),
        "survivors": len(survivors),
        "unreadable_survivors": unreadable,
    }
    print(json.dumps(result))
