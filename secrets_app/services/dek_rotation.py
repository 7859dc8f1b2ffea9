"""DEK rotation: every secret version re-encrypted under a fresh DEK (``rotate_deks``, revocation).

Crash-safe and resumable like every rotation (see :mod:`keys_app.services.rotation`):
new DEKs commit on dek before any version references them, each version moves by
compare-and-set on default (``WHERE dek_id = old``) in a transaction that holds the
job's fencing row, and an old DEK is deleted only after its version moved.  A
``kill -9`` at any instant leaves every secret readable; re-running continues the job.
Reads and writes go on meanwhile.  Per batch, the steps and why they are safe are
in :func:`deks_rotate`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from keys_app import crypto
from keys_app.errors import IntegrityCheckFailed, KeyMaterialUnavailable
from keys_app.models import Dek, Key, RotationJob
from keys_app.services.bulk import bulk_insert_rows, bulk_update_rows, sqlite_bulk_writes
from keys_app.services.jobs import (
    Progress,
    job_advance,
    job_claim,
    job_fence_check,
    job_fence_drop,
    job_fence_take,
    job_finish,
    job_heartbeat,
)
from keys_app.services.material import dek_context, dek_unwrap_raw, deks_fence, kek_material, key_cache
from secrets_app.models import SecretVersion
from secrets_app.storage import DEK_KEY_VERSION, payload_context, payload_open


def _deks_scope(key: Key | None, secret_id: uuid.UUID | None) -> str:
    if secret_id is not None:
        return f"secret:{secret_id}"
    if key is not None:
        return f"key:{key.id}"
    return "all"


def deks_rotate(
    *,
    key: Key | None = None,
    secret_id: uuid.UUID | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Re-encrypt secret versions under fresh DEKs (wrapped by the key's primary version).

    Per batch of versions (ordered by id, after the job cursor):

    1. read the DEKs owned by the batch's versions (dek), then, in one default
       transaction holding this job's fencing row (``jobs.job_fence_check``),
       read which DEK each version references now; delete owned DEKs that
       are not referenced (left by a crash of an earlier attempt of this job),
       skip versions that changed since the batch was read (destroyed
       meanwhile) and versions whose DEK is already newer than the job
       (rotated before the crash);
    2. decrypt, then commit the new DEKs on dek and fence them against a
       revocation of their KEK version (``material.deks_fence``);
    3. compare-and-set ``(ciphertext, dek_id)`` on default ``WHERE dek_id = old``,
       in a transaction that holds the fencing row again;
    4. delete the old DEKs of versions that moved, and the new DEKs of those
       that did not (a concurrent change won); then advance the cursor.

    **Why step 1 never deletes a DEK another live job wrote.**  One DEK
    rotation of any scope runs at a time (``job_claim(exclusive=True)``,
    atomic), and within a job only the holder of the fencing row writes:
    another incarnation's new DEKs are written after it took the fencing row,
    which is after our check in step 1, which is after our read of the owned
    DEKs, so they are not in our list; and its compare-and-set in step 3
    commits before the takeover or not at all.
    """
    versions = SecretVersion.objects.filter(dek_id__isnull=False)
    if secret_id is not None:
        versions = versions.filter(secret_id=secret_id)
    elif key is not None:
        versions = versions.filter(secret__key_id=key.id)
    if dry_run:
        return {"dry_run": True, "versions_to_rotate": versions.count()}
    scope = _deks_scope(key, secret_id)
    job, resumed = job_claim(RotationJob.Kind.ROTATE_DEKS, scope, exclusive=True)
    job_fence_take(job)
    if not resumed:
        job_advance(job, total=versions.count())
    rotated = 0
    columns = ("id", "secret_id", "revision", "dek_id", "ciphertext", "secret__key_id")
    with sqlite_bulk_writes("default", "dek"), job_heartbeat(job):
        while True:
            batch_qs = versions.order_by("id")
            if job.cursor:
                batch_qs = batch_qs.filter(id__gt=uuid.UUID(job.cursor))
            batch = [_VersionRow(*row) for row in batch_qs.values_list(*columns)[:batch_size]]
            if not batch:
                break
            rotated += _rotate_batch(job, batch)
            job_advance(job, processed=len(batch), cursor=str(batch[-1].id))
            if progress:
                progress(job.processed, job.total)
    job_finish(job)
    job_fence_drop(job)
    return {"job": str(job.id), "resumed": resumed, "versions_rotated": rotated}


class _VersionRow(NamedTuple):
    """The columns of a secret version that DEK rotation needs (no model instances: speed)."""

    id: uuid.UUID
    secret_id: uuid.UUID
    revision: int
    dek_id: uuid.UUID
    ciphertext: bytes
    key_id: uuid.UUID


class _DekRow(NamedTuple):
    id: uuid.UUID
    owner_id: uuid.UUID | None
    key_id: uuid.UUID
    kek_version: int
    wrapped: bytes
    created_at: datetime


def _rotate_batch(job: RotationJob, batch: list[_VersionRow]) -> int:
    dek_columns = ("id", "owner_id", "key_id", "kek_version", "wrapped", "created_at")
    owned: dict[uuid.UUID, list[_DekRow]] = defaultdict(list)
    rows = Dek.objects.using("dek").filter(owner_id__in=[v.id for v in batch]).values_list(*dek_columns)
    for dek in map(_DekRow._make, rows):
        if dek.owner_id is not None:
            owned[dek.owner_id].append(dek)
    with transaction.atomic():
        job_fence_check(job)  # after reading ``owned``: see deks_rotate
        refs = dict(SecretVersion.objects.filter(id__in=[v.id for v in batch]).values_list("id", "dek_id"))
    current: dict[uuid.UUID, _DekRow] = {}
    orphans: list[uuid.UUID] = []
    for version in batch:
        referenced = refs.get(version.id)
        for dek in owned.get(version.id, []):
            if dek.id == referenced:
                current[version.id] = dek
            else:
                orphans.append(dek.id)
    # Versions that changed since the batch was read (destroyed, deleted) are left alone.
    batch = [v for v in batch if refs.get(v.id) == v.dek_id]
    # A version whose DEK row is missing cannot be rotated (nor read): report, don't guess.
    missing = [v for v in batch if v.id not in current]
    if missing:
        present = set(Dek.objects.using("dek").filter(id__in=[v.dek_id for v in missing]).values_list("id", flat=True))
        gone = [v for v in missing if v.dek_id not in present]
        # A concurrent destroy (``storage.secret_version_destroy``) deletes the DEK while it holds
        # the version's row lock, then empties the row: wait for that lock, and skip the versions
        # whose DEK reference changed meanwhile (they are skipped below: not in ``current``).
        with transaction.atomic():
            gone_refs = dict(
                SecretVersion.objects.select_for_update()
                .filter(id__in=[v.id for v in gone])
                .values_list("id", "dek_id")
            )
        for version in gone:
            if gone_refs.get(version.id) == version.dek_id:
                raise KeyMaterialUnavailable(
                    f"DEK {version.dek_id} of secret {version.secret_id} revision {version.revision} is missing"
                )
    if orphans:
        Dek.objects.using("dek").filter(id__in=orphans).delete()

    primaries = dict(Key.objects.filter(id__in={v.key_id for v in batch}).values_list("id", "primary_version"))
    now = timezone.now()
    new_deks: list[tuple[Any, ...]] = []
    fresh_deks: dict[uuid.UUID, dict[uuid.UUID, tuple[int, crypto.SecretBytes]]] = defaultdict(dict)
    updates: list[tuple[Any, ...]] = []
    for version in batch:
        found = current.get(version.id)
        if found is None or found.created_at >= job.started_at:
            continue  # already rotated by this job before an interruption
        old_material = dek_unwrap_raw(found.id, found.key_id, found.kek_version, found.wrapped)
        try:
            plaintext = payload_open(material=old_material, version=version)
        except IntegrityCheckFailed as exc:
            raise IntegrityCheckFailed(f"{exc}; nothing after it was rotated") from None
        primary = primaries[version.key_id]
        new_id = uuid.uuid4()
        material = crypto.generate_key()
        wrapped = crypto.seal(
            kek_material(version.key_id, primary),
            material.reveal(),
            context=dek_context(new_id, version.key_id, primary),
            key_version=primary,
        )
        new_deks.append((new_id, version.key_id, primary, wrapped, version.id, now))
        fresh_deks[version.key_id][new_id] = (primary, material)
        ciphertext = crypto.seal(
            material,
            plaintext,
            context=payload_context(version.secret_id, version.revision, new_id),
            key_version=DEK_KEY_VERSION,
        )
        updates.append((ciphertext, new_id, version.id, version.dek_id))
    if not updates:
        return 0
    with transaction.atomic(using="dek"):
        bulk_insert_rows(Dek, "dek", ["id", "key_id", "kek_version", "wrapped", "owner_id", "created_at"], new_deks)
    # The primary versions were read before the insert: fence the DEKs of keys that moved since.
    primaries_now = dict(Key.objects.filter(id__in=list(fresh_deks)).values_list("id", "primary_version"))
    for key_id, fresh in fresh_deks.items():
        if any(version != primaries_now.get(key_id) for version, _ in fresh.values()):
            deks_fence(key_id=key_id, deks=fresh)
    with transaction.atomic():
        job_fence_check(job)
        bulk_update_rows(SecretVersion, "default", ["ciphertext", "dek_id"], ["id", "dek_id"], updates)
    now_refs = dict(SecretVersion.objects.filter(id__in=[u[2] for u in updates]).values_list("id", "dek_id"))
    moved = [u for u in updates if now_refs.get(u[2]) == u[1]]
    lost = [u[1] for u in updates if now_refs.get(u[2]) != u[1]]
    with transaction.atomic(using="dek"):
        Dek.objects.using("dek").filter(id__in=[u[3] for u in moved] + lost).delete()
    cache = key_cache()
    for u in moved:
        cache.drop_name(("dek", u[3]))
    return len(moved)
