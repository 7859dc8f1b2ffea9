"""Read-only views of the hierarchy: status counts and full verification."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.db.models import Count

from keys_app.errors import HierarchyError
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.providers import get_provider
from keys_app.services import root
from keys_app.services.material import dek_unwrap, kek_material

Progress = Callable[[int, int], None]


def hierarchy_status() -> dict[str, Any]:
    """Counts per level and per key version, and what retired versions still wrap.

    A fixed number of queries: one per database table, grouped.
    """
    from secrets_app.models import SecretVersion

    rek_rows = root.rek_versions()
    kek_rows: list[dict[str, Any]] = [
        dict(row) for row in KekVersion.objects.using("kek").values("key_id", "version", "state", "rek_version")
    ]
    dek_counts: dict[tuple[uuid.UUID, int], int] = {
        (row["key_id"], row["kek_version"]): row["n"]
        for row in Dek.objects.using("dek").values("key_id", "kek_version").annotate(n=Count("id")).order_by()
    }
    versions_by_key: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(kek_rows, key=lambda r: (str(r["key_id"]), r["version"])):
        versions_by_key[row["key_id"]].append(row)
    keys = []
    still_on_retired = 0
    for key in Key.objects.select_related("project").order_by("created_at"):
        versions = []
        for row in versions_by_key.get(key.id, []):
            deks = dek_counts.get((key.id, row["version"]), 0)
            if row["version"] != key.primary_version:
                still_on_retired += deks
            versions.append(
                {
                    "version": row["version"],
                    "state": row["state"],
                    "rek_version": row["rek_version"],
                    "primary": row["version"] == key.primary_version,
                    "deks": deks,
                }
            )
        keys.append(
            {
                "id": str(key.id),
                "name": key.name,
                "project_id": str(key.project_id),
                "state": key.state,
                "usage": key.usage,
                "primary_version": key.primary_version,
                "rotation_count": key.rotation_count,
                "next_rotation_at": key.next_rotation_at.isoformat() if key.next_rotation_at else None,
                "versions": versions,
                "deks_on_older_versions": sum(int(v["deks"]) for v in versions if not v["primary"]),
            }
        )
    current = next((r for r in reversed(rek_rows) if r.state == RootKeyVersion.State.ACTIVE), None)
    try:
        provider = get_provider().describe()
    except HierarchyError as exc:
        provider = {"error": str(exc)}
    status_counts = dict(SecretVersion.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {
        "initialised": current is not None,
        "root": {
            "provider": provider,
            "current_version": current.version if current else None,
            "versions": [
                {
                    "version": r.version,
                    "provider": r.provider,
                    "state": r.state,
                    "kek_versions": sum(
                        1
                        for k in kek_rows
                        if k["rek_version"] == r.version and k["state"] != KekVersion.State.DESTROYED
                    ),
                }
                for r in rek_rows
            ],
        },
        "kek": {"keys": len(keys), "versions": len(kek_rows)},
        "dek": {"total": sum(dek_counts.values()), "wrapped_by_older_kek_versions": still_on_retired},
        "secret_versions": {str(k): v for k, v in status_counts.items()},
        "keys": keys,
        "running_jobs": [
            {
                "id": str(j.id),
                "kind": j.kind,
                "scope": j.scope,
                "phase": j.phase,
                "processed": j.processed,
                "total": j.total,
                "lease_owner": j.lease_owner,
            }
            for j in RotationJob.objects.using("kek").filter(state=RotationJob.State.RUNNING)
        ],
    }


def hierarchy_verify(*, batch_size: int = 1000, progress: Progress | None = None) -> dict[str, Any]:
    """Check that every REK version, KEK version, DEK and secret version opens.

    Returns ``{"ok": bool, "checked": {...}, "failures": [...]}``; each failure
    names the object and the reason, never key or payload bytes.  DEKs that no
    secret version references (left by an interrupted write) are counted, not
    failed.
    """
    from secrets_app.models import SecretVersion
    from secrets_app.storage import payload_open

    failures: list[str] = []
    checked = {"rek_versions": 0, "kek_versions": 0, "deks": 0, "secret_versions": 0}
    for row in root.rek_versions():
        if row.state != RootKeyVersion.State.ACTIVE:
            continue
        try:
            root.rek_check(row)
            checked["rek_versions"] += 1
        except HierarchyError as exc:
            failures.append(f"REK version {row.version}: {exc}")
    for kek in KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED).order_by("key_id", "version"):
        try:
            kek_material(kek.key_id, kek.version)
            checked["kek_versions"] += 1
        except HierarchyError as exc:
            failures.append(f"KEK version {kek.version} of key {kek.key_id}: {exc}")
    referenced: set[uuid.UUID] = set()
    total = SecretVersion.objects.filter(dek_id__isnull=False).count()
    after: uuid.UUID | None = None
    while True:
        qs = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret").order_by("id")
        if after is not None:
            qs = qs.filter(id__gt=after)
        batch = list(qs[:batch_size])
        if not batch:
            break
        after = batch[-1].id
        deks = Dek.objects.using("dek").in_bulk([v.dek_id for v in batch])
        for version in batch:
            referenced.add(version.dek_id)  # type: ignore[arg-type]
            label = f"secret {version.secret_id} revision {version.revision}"
            dek = deks.get(version.dek_id)
            if dek is None:
                failures.append(f"{label}: DEK {version.dek_id} is missing")
                continue
            if dek.key_id != version.secret.key_id:
                failures.append(f"{label}: DEK {dek.id} belongs to key {dek.key_id}, not to the secret's key")
                continue
            try:
                payload_open(material=dek_unwrap(dek), version=version)
                checked["secret_versions"] += 1
            except HierarchyError as exc:
                failures.append(f"{label}: {exc}")
        if progress:
            progress(checked["secret_versions"] + len(failures), total)
    orphans = 0
    for dek in Dek.objects.using("dek").order_by("id").iterator(chunk_size=batch_size):
        try:
            dek_unwrap(dek)
            checked["deks"] += 1
        except HierarchyError as exc:
            failures.append(f"DEK {dek.id}: {exc}")
        if dek.id not in referenced:
            orphans += 1
    return {"ok": not failures, "checked": checked, "unreferenced_deks": orphans, "failures": failures}
