"""KEK rotation (a new primary version), DEK re-wrap under it, and destroying compromised versions.

Crash-safe and resumable like every rotation (see :mod:`keys_app.services.rotation`):
the new KEK version commits on kek before the primary version moves on default
(compare-and-set), DEKs move by compare-and-set in committed batches, and a version
is destroyed only when no DEK references it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from keys_app import crypto
from keys_app.errors import HierarchyError, IntegrityCheckFailed
from keys_app.models import Dek, KekVersion, Key, RotationJob
from keys_app.services.bulk import bulk_update_rows, sqlite_bulk_writes
from keys_app.services.jobs import Progress, job_advance, job_claim, job_finish, job_heartbeat
from keys_app.services.material import dek_context, deks_fence, kek_material, kek_version_create, key_cache


def kek_rotate(*, key: Key, now: datetime | None = None) -> Key:
    """Make a new KEK version primary for ``key``; old DEKs are left to :func:`deks_rewrap`.

    Step 1 commits version ``primary + 1`` on kek (idempotent); step 2 moves
    ``primary_version`` on default by compare-and-set, so two concurrent
    rotations of the same key produce exactly one new version.
    """
    kek_rotate_cas(key=key, now=now)
    key.refresh_from_db()
    return key


def kek_rotate_cas(*, key: Key, now: datetime | None = None, due_by: datetime | None = None) -> bool:
    """The two steps of :func:`kek_rotate`; True if *this call* moved the primary version.

    With ``due_by``, step 2 also requires ``next_rotation_at <= due_by``: the
    due-check and the rotation are then one conditional ``UPDATE``, so
    scheduled runs on several machines rotate each due key exactly once, and a
    crash before step 2 leaves only an unreferenced version that the next run
    reuses.  ``key`` is not refreshed.
    """
    now = now or timezone.now()
    current = key.primary_version
    kek_version_create(key_id=key.id, version=current + 1, algorithm=key.algorithm)
    updates: dict[str, Any] = {
        "primary_version": current + 1,
        "rotation_count": F("rotation_count") + 1,
        "rotated_at": now,
        "updated_at": now,
    }
    if key.rotation_period:
        updates["next_rotation_at"] = now + key.rotation_period
    rows = Key.objects.filter(id=key.id, primary_version=current)
    if due_by is not None:
        rows = rows.filter(next_rotation_at__lte=due_by)
    with transaction.atomic():
        return rows.update(**updates) == 1


def deks_pending_rewrap(keys: Iterable[Key]) -> dict[uuid.UUID, dict[int, int]]:
    """Per key, the number of DEKs per KEK version older than its primary version."""
    primaries = {key.id: key.primary_version for key in keys}
    counts: dict[uuid.UUID, dict[int, int]] = defaultdict(dict)
    rows = (
        Dek.objects.using("dek")
        .filter(key_id__in=list(primaries))
        .values("key_id", "kek_version")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        if row["kek_version"] != primaries[row["key_id"]]:
            counts[row["key_id"]][row["kek_version"]] = row["n"]
    return counts


def deks_rewrap(
    *, key: Key | None = None, batch_size: int = 1000, dry_run: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Re-wrap every DEK not wrapped by its key's primary KEK version.

    Batches walk ``(key_id, kek_version, id)`` in index order; each batch is
    one dek transaction of compare-and-set updates, then the job cursor is
    committed on kek.  A batch replayed after a crash updates nothing (the CAS
    on the old version fails), so running this twice re-wraps nothing the
    second time.  Old KEK versions that no DEK references any more are marked
    retired (their material stays, to decrypt Key Manager ciphertexts).
    """
    keys = [key] if key is not None else list(Key.objects.filter(usage="symmetric_encryption"))
    pending = deks_pending_rewrap(keys)
    total = sum(sum(v.values()) for v in pending.values())
    if dry_run:
        return {
            "dry_run": True,
            "deks_to_rewrap": total,
            "per_key": {str(k): {str(v): n for v, n in versions.items()} for k, versions in pending.items()},
        }
    scope = f"key:{key.id}" if key is not None else "all"
    job, resumed = job_claim(RotationJob.Kind.REWRAP_DEKS, scope)
    job_advance(job, total=job.processed + total)
    rewrapped = 0
    with job_heartbeat(job):
        for k in keys:
            with sqlite_bulk_writes("dek"):
                for old_version in sorted(pending.get(k.id, {})):
                    rewrapped += _rewrap_version(job, k, old_version, batch_size, progress)
            if k.id in pending:
                KekVersion.objects.using("kek").filter(
                    key_id=k.id, version__lt=k.primary_version, state=KekVersion.State.ENABLED
                ).update(state=KekVersion.State.RETIRED)
    job_finish(job)
    return {"job": str(job.id), "resumed": resumed, "deks_rewrapped": rewrapped}


def _rewrap_version(job: RotationJob, key: Key, old_version: int, batch_size: int, progress: Progress | None) -> int:
    new_version = key.primary_version
    new_kek = kek_material(key.id, new_version)
    old_kek = kek_material(key.id, old_version)
    cursor_prefix = f"{key.id}:{old_version}:"
    after = job.cursor[len(cursor_prefix) :] if job.cursor.startswith(cursor_prefix) else ""
    done = 0
    while True:
        rows = Dek.objects.using("dek").filter(key_id=key.id, kek_version=old_version)
        if after:
            rows = rows.filter(id__gt=uuid.UUID(after))
        batch = list(rows.order_by("id").values_list("id", "wrapped")[:batch_size])
        if not batch:
            return done
        updates = []
        plaintexts: dict[uuid.UUID, tuple[int, crypto.SecretBytes]] = {}
        for dek_id, wrapped in batch:
            try:
                material = crypto.open_(old_kek, bytes(wrapped), context=dek_context(dek_id, key.id, old_version))
            except crypto.InvalidCiphertext:
                raise IntegrityCheckFailed(
                    f"DEK {dek_id} failed authentication under version {old_version} "
                    f"of key {key.id}; nothing after it was re-wrapped"
                ) from None
            rewrapped = crypto.seal(
                new_kek, material, context=dek_context(dek_id, key.id, new_version), key_version=new_version
            )
            updates.append((rewrapped, new_version, dek_id, old_version))
            plaintexts[dek_id] = (new_version, crypto.SecretBytes(material))
        with transaction.atomic(using="dek"):
            bulk_update_rows(Dek, "dek", ["wrapped", "kek_version"], ["id", "kek_version"], updates)
        # ``key.primary_version`` was read before this batch: a revocation may have moved it since.
        fenced = deks_fence(key_id=key.id, deks=plaintexts)
        if fenced is not None and fenced != new_version:
            new_version, new_kek = fenced, kek_material(key.id, fenced)
        after = str(batch[-1][0])
        done += len(batch)
        job_advance(job, processed=len(batch), cursor=cursor_prefix + after)
        if progress:
            progress(job.processed, job.total)


def kek_versions_destroy(*, key: Key, versions: Iterable[int], batch_size: int = 500) -> list[int]:
    """Destroy each of ``versions`` of ``key`` once no DEK references it (revocation's last phase).

    The caller has already published a primary version that is not among
    ``versions``: the scan below starts after that, so a DEK committed under
    a doomed version later is re-wrapped by its own creator
    (``material.deks_fence``); what is left (DEKs not owned by a secret
    version, late DEKs) is re-wrapped here first.  Idempotent.
    """
    destroyed = []
    for version in versions:
        for _ in range(10):
            if not Dek.objects.using("dek").filter(key_id=key.id, kek_version=version).exists():
                break
            deks_rewrap(key=key, batch_size=batch_size)  # DEKs not owned by a secret version, late DEKs
        else:
            raise HierarchyError(f"DEKs kept appearing under version {version} of key {key.id}; run revoke_key again")
        KekVersion.objects.using("kek").filter(key_id=key.id, version=version).update(
            state=KekVersion.State.DESTROYED, wrapped_material=None, destroyed_at=timezone.now()
        )
        destroyed.append(version)
    key_cache().drop_owner(str(key.id))
    return destroyed
