"""REK rotation: a new root key version, every KEK version re-wrapped under it, the old ones retired.

Crash-safe and resumable like every rotation (see :mod:`keys_app.services.rotation`):
the new version commits first, KEK rows move by compare-and-set in committed batches,
and an old version is retired only once a scan finds nothing under it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from keys_app.errors import HierarchyError
from keys_app.models import KekVersion, RootKeyVersion, RotationJob
from keys_app.services import root
from keys_app.services.audit_key import audit_keys_rewrap
from keys_app.services.jobs import Progress, job_advance, job_claim, job_finish, job_heartbeat


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
