"""Read-only views of the hierarchy: status counts and full verification."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from keys_app.errors import HierarchyError
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.providers import get_provider
from keys_app.services import root
from keys_app.services.jobs import job_advance, job_claim, job_finish
from keys_app.services.material import dek_unwrap, deks_destroy, kek_material

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

    Returns ``{"ok": bool, "checked": {...}, "unreferenced_deks": n, "failures": [...]}``;
    each failure names the object and the reason, never key or payload bytes.
    ``ok`` is False on any failure *and* on unreferenced DEKs (a DEK that no
    secret version references is either a leftover of an interrupted write or
    a destroyed version's DEK that survived: crypto-shredding incomplete);
    ``hierarchy_repair`` removes them.  A DEK counts as unreferenced only if it
    was created before this check started and is still unreferenced when
    re-checked at the end, so concurrent writes and rotations are not reported.
    """
    from secrets_app.models import SecretVersion
    from secrets_app.storage import payload_open

    started = timezone.now()
    failures: list[str] = []
    checked = {"rek_versions": 0, "kek_versions": 0, "deks": 0, "secret_versions": 0}
    retired_rek = set()
    for row in root.rek_versions():
        if row.state != RootKeyVersion.State.ACTIVE:
            retired_rek.add(row.version)
            continue
        try:
            root.rek_check(row)
            checked["rek_versions"] += 1
        except HierarchyError as exc:
            failures.append(f"REK version {row.version}: {exc}")
    for kek in KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED).order_by("key_id", "version"):
        if kek.rek_version in retired_rek:
            failures.append(
                f"KEK version {kek.version} of key {kek.key_id} is wrapped under retired root key version "
                f"{kek.rek_version} (left by an interrupted creation; --repair removes it if nothing uses it)"
            )
            continue
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
    candidates: list[uuid.UUID] = []
    for dek in Dek.objects.using("dek").order_by("id").iterator(chunk_size=batch_size):
        try:
            dek_unwrap(dek)
            checked["deks"] += 1
        except HierarchyError as exc:
            failures.append(f"DEK {dek.id}: {exc}")
        if dek.id not in referenced and dek.created_at < started:
            candidates.append(dek.id)
    orphans = _still_unreferenced(candidates, batch_size)
    for dek_id in orphans[:20]:
        failures.append(f"DEK {dek_id} is referenced by no secret version (--repair destroys it)")
    if len(orphans) > 20:
        failures.append(f"... and {len(orphans) - 20} more unreferenced DEKs")
    return {"ok": not failures, "checked": checked, "unreferenced_deks": len(orphans), "failures": failures}


def _still_unreferenced(dek_ids: list[uuid.UUID], batch_size: int) -> list[uuid.UUID]:
    """Those of ``dek_ids`` that no secret version references now (re-read in batches)."""
    from secrets_app.models import SecretVersion

    left: list[uuid.UUID] = []
    for start in range(0, len(dek_ids), batch_size):
        chunk = dek_ids[start : start + batch_size]
        used = set(SecretVersion.objects.filter(dek_id__in=chunk).values_list("dek_id", flat=True))
        left.extend(d for d in chunk if d not in used)
    return left


#: How old an unreferenced DEK or KEK row must be before ``hierarchy_repair`` removes it when
#: its owner may still be in the middle of creating it.
REPAIR_GRACE = timedelta(hours=1)


def hierarchy_repair(*, grace: timedelta = REPAIR_GRACE, batch_size: int = 1000) -> dict[str, Any]:
    """Destroy what verification reports as leftovers, never what a writer is still creating.

    * **Unreferenced DEKs** (crypto-shredding a destroyed version's surviving
      DEK, or a crashed write's leftover).  The repair claims an exclusive DEK
      rotation job (scope ``repair``), so no ``rotate_deks`` runs meanwhile (it
      is refused with "busy" while one runs).  A DEK is destroyed when no secret
      version references it (re-read right before the delete) and either its
      owner version exists (so the owner's creation finished: the DEK lost a
      race or belongs to a destroyed version) or it is older than ``grace``
      (its owner version may still be being created).
    * **KEK versions under a retired REK version** (a creator died before its
      fence), older than ``grace``, that nothing references: no key with that
      id, or a version above the key's primary one.  Referenced ones are left
      and reported (nothing can open them).

    Returns the counts; the command records them in the audit log.
    """
    from secrets_app.models import SecretVersion

    job, _ = job_claim(RotationJob.Kind.ROTATE_DEKS, "repair", exclusive=True)
    try:
        cutoff = timezone.now() - grace
        destroyed = 0
        after: uuid.UUID | None = None
        while True:
            qs = Dek.objects.using("dek").order_by("id")
            if after is not None:
                qs = qs.filter(id__gt=after)
            batch = list(qs.values_list("id", "owner_id", "created_at")[:batch_size])
            if not batch:
                break
            after = batch[-1][0]
            ids = [row[0] for row in batch]
            used = set(SecretVersion.objects.filter(dek_id__in=ids).values_list("dek_id", flat=True))
            owners = set(
                SecretVersion.objects.filter(id__in=[row[1] for row in batch if row[1]]).values_list("id", flat=True)
            )
            doomed = [
                dek_id
                for dek_id, owner_id, created_at in batch
                if dek_id not in used and (owner_id in owners or created_at < cutoff)
            ]
            if doomed:
                destroyed += deks_destroy(doomed)
            job_advance(job, processed=len(batch), cursor=str(after))
        kek_removed, kek_referenced = _repair_kek_leftovers(cutoff)
    finally:
        job_finish(job)
    return {
        "deks_destroyed": destroyed,
        "kek_leftovers_removed": kek_removed,
        "kek_leftovers_referenced": kek_referenced,
        "grace_seconds": int(grace.total_seconds()),
    }


def _repair_kek_leftovers(cutoff: datetime) -> tuple[int, int]:
    retired = list(
        RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.RETIRED).values_list("version", flat=True)
    )
    rows = list(
        KekVersion.objects.using("kek")
        .filter(rek_version__in=retired, created_at__lt=cutoff)
        .exclude(state=KekVersion.State.DESTROYED)
        .values_list("id", "key_id", "version", "rek_version")
    )
    primaries = dict(Key.objects.filter(id__in={r[1] for r in rows}).values_list("id", "primary_version"))
    removed = referenced = 0
    for row_id, key_id, version, rek_version in rows:
        primary = primaries.get(key_id)
        if primary is not None and version <= primary:
            referenced += 1
            continue
        with transaction.atomic(using="kek"):
            removed += KekVersion.objects.using("kek").filter(id=row_id, rek_version=rek_version).delete()[0]
    return removed, referenced
