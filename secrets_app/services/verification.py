"""Verification and repair of the whole hierarchy, down to every secret version's payload.

``hierarchy_status`` and ``hierarchy_verify`` build on keys_app's checks of its own
levels (:mod:`keys_app.services.inspection`) and add what only this layer knows:
which DEK each secret version references and whether its payload opens.
``hierarchy_repair`` destroys the leftovers verification reports (unreferenced DEKs,
KEK versions under a retired REK version), never what a writer is still creating.
Failures name objects and reasons, never key or payload bytes.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from keys_app.errors import HierarchyError
from keys_app.models import Dek, RotationJob
from keys_app.services.inspection import REPAIR_GRACE, hierarchy_key_status, hierarchy_verify_keys, repair_kek_leftovers
from keys_app.services.jobs import Progress, job_advance, job_claim, job_finish
from keys_app.services.material import dek_unwrap, deks_destroy
from secrets_app.models import SecretVersion
from secrets_app.storage import payload_open

__all__ = ["REPAIR_GRACE", "hierarchy_repair", "hierarchy_status", "hierarchy_verify"]


def hierarchy_status() -> dict[str, Any]:
    """Counts per level and per key version, what retired versions still wrap, secret versions per status.

    A fixed number of queries: one per database table, grouped.
    """
    status = hierarchy_key_status()
    status_counts = dict(SecretVersion.objects.values_list("status").annotate(n=Count("id")).order_by())
    order = ("initialised", "root", "kek", "dek")
    result = {name: status[name] for name in order}
    result["secret_versions"] = {str(k): v for k, v in status_counts.items()}
    result.update({name: value for name, value in status.items() if name not in order})
    return result


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
    started = timezone.now()
    failures, key_checked = hierarchy_verify_keys()
    checked = {**key_checked, "deks": 0, "secret_versions": 0}
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
    left: list[uuid.UUID] = []
    for start in range(0, len(dek_ids), batch_size):
        chunk = dek_ids[start : start + batch_size]
        used = set(SecretVersion.objects.filter(dek_id__in=chunk).values_list("dek_id", flat=True))
        left.extend(d for d in chunk if d not in used)
    return left


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
        kek_removed, kek_referenced = repair_kek_leftovers(cutoff)
    finally:
        job_finish(job)
    return {
        "deks_destroyed": destroyed,
        "kek_leftovers_removed": kek_removed,
        "kek_leftovers_referenced": kek_referenced,
        "grace_seconds": int(grace.total_seconds()),
    }
