"""Rotation and revocation at every level of the hierarchy.

There is no transaction across the three databases, so each operation is
ordered to be crash-safe and resumable (see docs/architecture.md):

* new key material is created and committed first;
* references are moved in committed batches, each row by compare-and-set
  (``UPDATE … WHERE id = ? AND <old reference>``), so a concurrent writer or a
  re-run never clobbers newer state;
* old material is retired or destroyed only when nothing references it.

A ``kill -9`` at any instant therefore leaves every secret readable, and
re-running the same command continues the interrupted job (``services.jobs``).
Reads and writes go on during every rotation.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connections, models, transaction
from django.db.models import Count, F
from django.utils import timezone

from keys_app import crypto
from keys_app.errors import HierarchyError, IntegrityCheckFailed, KeyMaterialUnavailable
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.services import root
from keys_app.services.audit_key import audit_keys_rewrap
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
from keys_app.services.material import (
    dek_context,
    dek_unwrap_raw,
    deks_fence,
    kek_material,
    kek_version_create,
    key_cache,
)

# Pages SQLite's WAL may hold before a bulk rotation checkpoints it (SQLite's default: 1,000).
# Batches update rows spread over the whole table (ids are random), so consecutive batches
# rewrite many of the same index pages; checkpointing every 1,000 pages copied each of them
# back to the database file once per batch.  A larger WAL copies each page once per 20,000
# pages written: about 30 % less time for a DEK rotation at 100k versions (bench/).
BULK_WAL_AUTOCHECKPOINT = 20_000


@contextmanager
def sqlite_bulk_writes(*aliases: str) -> Iterator[None]:
    """Checkpoint SQLite's WAL less often during a bulk rotation, then once at the end.

    Only the connections of this thread on SQLite aliases are changed (PostgreSQL is
    left alone) and the default is restored afterwards, also on an error.  Durability
    and crash safety are unchanged: a committed transaction is in the WAL either way,
    and a checkpoint only copies it into the database file (the WAL may grow to about
    80 MiB meanwhile).  Inside an outer transaction the final checkpoint is left to
    the next commit.
    """
    changed = [connections[a] for a in aliases if connections[a].vendor == "sqlite"]
    for connection in changed:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {BULK_WAL_AUTOCHECKPOINT}")
    try:
        yield
    finally:
        for connection in changed:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_autocheckpoint = 1000")
                if not connection.in_atomic_block:  # SQLite cannot checkpoint inside a transaction
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _bulk_update(
    model: type[models.Model],
    using: str,
    set_fields: Sequence[str],
    where_fields: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """``UPDATE … SET set_fields WHERE where_fields`` for many rows in one executemany.

    The ORM's per-row ``update()`` costs more than the cryptography it
    surrounds; this keeps batch rotation fast on SQLite and PostgreSQL alike.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    fields: list[Any] = [model._meta.get_field(name) for name in (*set_fields, *where_fields)]
    sql = "UPDATE {} SET {} WHERE {}".format(  # noqa: S608  (identifiers from model metadata)
        quote(model._meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields[: len(set_fields)]),
        " AND ".join(f"{quote(f.column)} = %s" for f in fields[len(set_fields) :]),
    )
    params = [
        [field.get_db_prep_value(value, connection) for field, value in zip(fields, row, strict=True)] for row in rows
    ]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


# --- REK -------------------------------------------------------------------------------------
def rek_rotate(
    *, to_provider: str | None = None, batch_size: int = 500, dry_run: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """New REK version; re-wrap every KEK version under it; retire the old versions.

    Touches only the kek database and the providers: its cost grows with the
    number of KEK versions, never with the number of secrets.

    **Fenced against concurrent KEK creation** (``material.kek_version_create``):
    the new version is committed (and so becomes current) before the first
    re-wrap scan; an old version is retired only after a scan that finds no
    row under it, and every scan starts after that commit.  A creator that
    wrapped under an old version either committed before its re-read of the
    current version showed the old one (then a scan here sees its row) or sees
    the new version on that re-read and re-wraps its row itself.  When a scan
    finds rows under an old version again (a late creator), re-wrapping starts
    over, so no row is ever left under a retired version by a live creator.
    Rows under an already retired version are leftovers of a creator that died
    before its fence, referenced by nothing: they are skipped (counted as
    ``unrecoverable_leftovers``) and removed by ``verify_hierarchy --repair``.
    """
    pending = KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED)
    if dry_run:
        current = root.rek_current()
        return {"dry_run": True, "current_rek_version": current.version, "kek_versions_to_rewrap": pending.count()}
    job, resumed = job_claim(RotationJob.Kind.ROTATE_ROOT_KEY, "root")
    if "target" not in job.params:
        old = root.rek_current()
        root.rek_check(old)  # refuse to start with a wrong current REK
        target_row = root.rek_create_version(to_provider)
        job_advance(
            job, params={"target": target_row.version, "from": old.version}, phase="rewrap", total=pending.count()
        )
    target = RootKeyVersion.objects.using("kek").get(version=job.params["target"])
    root.rek_check(target)
    rewrapped = 0
    retired: list[int] = []
    with job_heartbeat(job):
        for _ in range(100):
            rewrapped += _rek_rewrap_pass(job, target, pending, batch_size, progress)
            audit_keys_rewrap(target=target)  # the audit key is wrapped by the REK too: move it before retiring
            late = False
            for rek_row in RootKeyVersion.objects.using("kek").filter(version__lt=target.version).order_by("version"):
                if rek_row.state == RootKeyVersion.State.RETIRED:
                    # Retired already, but a crash may have come before its material was destroyed.
                    root.rek_retire(rek_row)
                elif pending.filter(rek_version=rek_row.version).exists():
                    late = True  # a creator committed under it after our pass: re-wrap again
                else:
                    root.rek_retire(rek_row)
                    retired.append(rek_row.version)
            if not late:
                break
        else:
            raise HierarchyError("KEK versions kept appearing under old root key versions; run rotate_root_key again")
    leftovers = pending.filter(rek_version__in=_retired_rek_versions()).count()
    job_finish(job)
    return {
        "job": str(job.id),
        "resumed": resumed,
        "rek_version": target.version,
        "provider": target.provider,
        "kek_versions_rewrapped": rewrapped,
        "total_rewrapped": job.processed,
        "retired_rek_versions": retired,
        "unrecoverable_leftovers": leftovers,
    }


def _retired_rek_versions() -> list[int]:
    return list(
        RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.RETIRED).values_list("version", flat=True)
    )


def _rek_rewrap_pass(
    job: RotationJob, target: RootKeyVersion, pending: Any, batch_size: int, progress: Progress | None
) -> int:
    """Re-wrap every KEK row not under ``target`` (nor under a retired version) in committed batches."""
    rewrapped = 0
    skip = _retired_rek_versions()
    while True:
        batch = list(
            pending.exclude(rek_version=target.version).exclude(rek_version__in=skip).order_by("id")[:batch_size]
        )
        if not batch:
            return rewrapped
        with transaction.atomic(using="kek"):
            for row in batch:
                material = root.rek_unwrap(
                    row.rek_version, bytes(row.wrapped_material or b""), key_id=row.key_id, kek_version=row.version
                )
                wrapped = root.rek_wrap(target, material, key_id=row.key_id, kek_version=row.version)
                KekVersion.objects.using("kek").filter(id=row.id, rek_version=row.rek_version).update(
                    wrapped_material=wrapped, rek_version=target.version
                )
            rewrapped += len(batch)
            job_advance(job, processed=len(batch), cursor=str(batch[-1].id))
        if progress:
            progress(job.processed, job.total)


# --- KEK -------------------------------------------------------------------------------------
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


# --- DEK re-wrap -----------------------------------------------------------------------------
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
            _bulk_update(Dek, "dek", ["wrapped", "kek_version"], ["id", "kek_version"], updates)
        # ``key.primary_version`` was read before this batch: a revocation may have moved it since.
        fenced = deks_fence(key_id=key.id, deks=plaintexts)
        if fenced is not None and fenced != new_version:
            new_version, new_kek = fenced, kek_material(key.id, fenced)
        after = str(batch[-1][0])
        done += len(batch)
        job_advance(job, processed=len(batch), cursor=cursor_prefix + after)
        if progress:
            progress(job.processed, job.total)


# --- DEK rotation (re-encryption of secret versions) -----------------------------------------
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
    from secrets_app.models import SecretVersion  # secrets_app builds on keys_app

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


def _bulk_insert(model: type[models.Model], using: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``INSERT`` many rows in one executemany (values prepared like the ORM would)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields: list[Any] = [model._meta.get_field(name) for name in columns]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608  (identifiers from model metadata)
        quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    )
    params = [[f.get_db_prep_save(v, connection) for f, v in zip(fields, row, strict=True)] for row in rows]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _rotate_batch(job: RotationJob, batch: list[_VersionRow]) -> int:
    from secrets_app.models import SecretVersion
    from secrets_app.storage import DEK_KEY_VERSION, payload_context

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
            plaintext = crypto.open_(
                old_material,
                bytes(version.ciphertext),
                context=payload_context(version.secret_id, version.revision, version.dek_id),
            )
        except crypto.InvalidCiphertext:
            raise IntegrityCheckFailed(
                f"secret {version.secret_id} revision {version.revision} failed authentication "
                "(tampered or moved ciphertext); nothing after it was rotated"
            ) from None
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
        _bulk_insert(Dek, "dek", ["id", "key_id", "kek_version", "wrapped", "owner_id", "created_at"], new_deks)
    # The primary versions were read before the insert: fence the DEKs of keys that moved since.
    primaries_now = dict(Key.objects.filter(id__in=list(fresh_deks)).values_list("id", "primary_version"))
    for key_id, fresh in fresh_deks.items():
        if any(version != primaries_now.get(key_id) for version, _ in fresh.values()):
            deks_fence(key_id=key_id, deks=fresh)
    with transaction.atomic():
        job_fence_check(job)
        _bulk_update(SecretVersion, "default", ["ciphertext", "dek_id"], ["id", "dek_id"], updates)
    now_refs = dict(SecretVersion.objects.filter(id__in=[u[2] for u in updates]).values_list("id", "dek_id"))
    moved = [u for u in updates if now_refs.get(u[2]) == u[1]]
    lost = [u[1] for u in updates if now_refs.get(u[2]) != u[1]]
    with transaction.atomic(using="dek"):
        Dek.objects.using("dek").filter(id__in=[u[3] for u in moved] + lost).delete()
    cache = key_cache()
    for u in moved:
        cache.drop_name(("dek", u[3]))
    return len(moved)


# --- revocation ------------------------------------------------------------------------------
def key_exposure_report(key: Key) -> dict[str, Any]:
    """What a compromise of ``key``'s current material reached: projects, secrets, versions."""
    from secrets_app.models import Secret, SecretVersion

    secrets = Secret.objects.filter(key_id=key.id)
    versions = SecretVersion.objects.filter(secret__key_id=key.id, dek_id__isnull=False)
    dek_counts = dict(
        Dek.objects.using("dek").filter(key_id=key.id).values_list("kek_version").annotate(n=Count("id")).order_by()
    )
    return {
        "key_id": str(key.id),
        "key_name": key.name,
        "project_id": str(key.project_id),
        "kek_versions": sorted(
            KekVersion.objects.using("kek")
            .filter(key_id=key.id)
            .exclude(state=KekVersion.State.DESTROYED)
            .values_list("version", flat=True)
        ),
        "deks_per_kek_version": {str(v): n for v, n in sorted(dek_counts.items())},
        "secrets": [{"id": str(s.id), "path": s.path, "name": s.name} for s in secrets.order_by("path", "name")],
        "secret_versions": versions.count(),
    }


def key_revoke(*, key: Key, reason: str, batch_size: int = 500, progress: Progress | None = None) -> dict[str, Any]:
    """Revoke a compromised key: rotate, re-encrypt everything under it, destroy old material.

    Phases (each resumable; the revoke job remembers the compromised versions):
    ``rotate`` makes a fresh version primary, so the compromised versions wrap
    nothing new; ``reencrypt`` rotates the DEKs of every secret version under
    the key (re-wrapping is not enough: the attacker may hold the dek
    database); ``destroy`` shreds each compromised version once no DEK
    references it.  Key Manager ciphertexts made by those versions become
    undecryptable, which is the point of revocation.
    """
    job, resumed = job_claim(RotationJob.Kind.REVOKE_KEY, f"key:{key.id}")
    with job_heartbeat(job):
        key.refresh_from_db()  # the caller's copy may predate a rotation
        if "compromised" not in job.params:
            report = key_exposure_report(key)
            compromised = [v for v in report["kek_versions"] if v <= key.primary_version]
            job_advance(job, params={"compromised": compromised, "reason": reason, "report": report}, phase="rotate")
        compromised = list(job.params["compromised"])
        key.refresh_from_db()
        if key.primary_version in compromised:
            key = kek_rotate(key=key)
        job_advance(job, phase="reencrypt")
        deks_rotate(key=key, batch_size=batch_size, progress=progress)
        job_advance(job, phase="destroy")
        destroyed = []
        for version in compromised:
            # The scan below starts after the new primary version was published (``kek_rotate``
            # above, or before the crash this run resumes): a DEK committed under ``version``
            # after it is re-wrapped by its own creator (``material.deks_fence``).
            for _ in range(10):
                if not Dek.objects.using("dek").filter(key_id=key.id, kek_version=version).exists():
                    break
                deks_rewrap(key=key, batch_size=batch_size)  # DEKs not owned by a secret version, late DEKs
            else:
                raise HierarchyError(
                    f"DEKs kept appearing under version {version} of key {key.id}; run revoke_key again"
                )
            KekVersion.objects.using("kek").filter(key_id=key.id, version=version).update(
                state=KekVersion.State.DESTROYED, wrapped_material=None, destroyed_at=timezone.now()
            )
            destroyed.append(version)
    key_cache().drop_owner(str(key.id))
    job_finish(job)
    report = dict(job.params["report"])
    report.update(
        {
            "reason": job.params["reason"],
            "destroyed_kek_versions": destroyed,
            "new_primary_version": key.primary_version,
            "job": str(job.id),
            "resumed": resumed,
        }
    )
    return report


__all__ = [
    "HierarchyError",
    "deks_rewrap",
    "deks_rotate",
    "kek_rotate",
    "kek_rotate_cas",
    "key_exposure_report",
    "key_revoke",
    "rek_rotate",
]
