"""Resumable job records for long rotations (kek database), and their leases.

A job is identified by ``(kind, scope)``.  Claiming it either creates it or
continues the running one left by an interrupted process.

**Claims are one atomic step.**  Checking that no conflicting job runs and
creating (or taking over) the job happen in one kek transaction that first
takes a claim lock: ``pg_advisory_xact_lock`` on PostgreSQL, the write lock
of an ``IMMEDIATE`` transaction on SQLite (the settings' ``transaction_mode``).
So two nodes started within the same millisecond cannot both pass the check;
the loser gets :class:`JobBusy`, and so does a loser of the
``one_running_job_per_scope`` constraint (never a raw ``IntegrityError``).
``exclusive`` kinds (DEK rotation) allow one running job of any scope at a
time: ``all``, ``key:K`` and ``secret:S`` overlap, and ``revoke_key``'s inner
DEK rotation is such a job too.

**Leases.**  The owner of a lease is ``host:boot-id:pid-namespace:pid:random``
(see :func:`lease_owner`); two containers with the same hostname, each running
the command as pid 1, still differ (namespace or boot id, and random part).  A lease is
renewed after every committed batch (:func:`job_advance`, a compare-and-set
on the owner, which raises :class:`LeaseLost` when another process took the
job over) and by a heartbeat thread (:func:`job_heartbeat`) between batches.
It is taken over only when it has expired, or at once when its owner is a
process of *this* machine (boot id) and pid namespace that no longer exists (a re-run
right after a ``kill -9``).  ``rotation_jobs --release`` drops a stuck lease.

**Fencing a stale owner.**  A process frozen for longer than its lease may
wake up after another one took the job over.  Jobs that write the default
database (DEK rotation) hold a second record there, :class:`~keys_app.models.RotationLease`:
every batch checks it (row-locked) inside the very transaction that moves
secret versions, and a takeover or release rewrites it first; so a stale
owner's writes either commit before the takeover is visible or not at all.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import IntegrityError as DbIntegrityError
from django.db import connections, transaction
from django.utils import timezone

from keys_app.errors import HierarchyError
from keys_app.models import RotationJob, RotationLease
from keys_app.processes import pid_alive

Progress = Callable[[int, int], None]

#: Exit status of a command that lost a claim race or found its job held by a live owner
#: (``EX_TEMPFAIL`` of sysexits.h: try again later).
EXIT_BUSY = 75
#: Key of the PostgreSQL advisory lock that serialises job claims (any 64-bit constant).
CLAIM_LOCK_KEY = 0x484B4D535F4A4F42  # "HKMS_JOB"


class JobBusy(HierarchyError):
    """Another live process holds this job, or a conflicting one runs: try again later."""

    code = "job_busy"
    exit_code = EXIT_BUSY
    status = 409
    type = "conflict"
    retryable = True
    server_log = None


class LeaseLost(JobBusy):
    """This process's lease was taken over (it was frozen past its lease, or released)."""

    code = "job_lease_lost"


def lease_duration() -> timedelta:
    """How long a lease lasts without renewal (``HKMS_JOB_LEASE_SECONDS``, default 300)."""
    raw = os.environ.get("HKMS_JOB_LEASE_SECONDS", "").strip()
    seconds = int(raw) if raw.isdigit() and int(raw) > 0 else 300
    return timedelta(seconds=seconds)


def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"
    return re.sub(r"\D", "", link) or "-"


def _boot_id() -> str:
    """This machine's boot id (shared by its containers, different on every other machine)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return re.sub(r"[^0-9a-f]", "", handle.read().lower())[:12] or "-"
    except OSError:
        return "-"


_owner_lock = threading.Lock()
_owner: tuple[int, str] | None = None


def lease_owner() -> str:
    """This process's lease owner, ``host:boot-id:pid-namespace:pid:random`` (one per process).

    ``HKMS_JOB_OWNER_PREFIX`` replaces ``host:boot-id:pid-namespace:pid`` (tests
    simulate nodes with the same hostname and pid with it); the random part stays.
    """
    global _owner
    pid = os.getpid()
    with _owner_lock:
        if _owner is None or _owner[0] != pid:  # a forked child gets its own identity
            prefix = os.environ.get("HKMS_JOB_OWNER_PREFIX", "").strip()
            if not prefix:
                prefix = f"{socket.gethostname()[:48]}:{_boot_id()}:{_pid_namespace()}:{pid}"
            _owner = (pid, f"{prefix}:{secrets.token_hex(6)}")
        return _owner[1]


def _owner_parts(owner: str) -> list[str] | None:
    parts = owner.rsplit(":", 4)
    return parts if len(parts) == 5 else None


def lease_alive(job: RotationJob) -> bool:
    """Whether ``job``'s lease protects it from a takeover by this process.

    Expired or released: no.  Otherwise yes, except when the owner ran on this
    machine (same boot id) in this pid namespace and its pid is gone: the fast
    takeover after a ``kill -9``.  Two containers with the same hostname, each
    running as pid 1, differ by pid namespace (same machine) or boot id (two
    machines), so neither ever takes the other's live lease.
    """
    if not job.lease_owner or job.lease_until is None or job.lease_until < timezone.now():
        return False
    theirs, mine = _owner_parts(job.lease_owner), _owner_parts(lease_owner())
    if theirs is None or mine is None:
        return True
    same_namespace = theirs[:3] == mine[:3] and "-" not in (theirs[1], theirs[2])
    if same_namespace and theirs[3].isdigit():
        if theirs[3] == mine[3]:
            return False  # our own pid in our own namespace, another random part: a dead predecessor
        return pid_alive(int(theirs[3]))
    return True  # another machine or container: only expiry tells


def job_running(kind: str, scope: str | None = None) -> RotationJob | None:
    jobs = RotationJob.objects.using("kek").filter(kind=kind, state=RotationJob.State.RUNNING)
    if scope is not None:
        jobs = jobs.filter(scope=scope)
    return jobs.first()


def _claim_lock() -> None:
    connection = connections["kek"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])
    # SQLite: the enclosing IMMEDIATE transaction already holds the database's write lock.


def job_claim(
    kind: str, scope: str, params: dict[str, Any] | None = None, *, exclusive: bool = False
) -> tuple[RotationJob, bool]:
    """The running job for ``(kind, scope)`` (resumed) or a new one; returns ``(job, resumed)``.

    With ``exclusive``, a running job of the same kind and another scope makes
    the claim fail (whatever its lease: finish or release that job first).
    Raises :class:`JobBusy` when the claim is lost.
    """
    me = lease_owner()
    now = timezone.now()
    lease = lease_duration()
    try:
        with transaction.atomic(using="kek"):
            _claim_lock()
            running = list(
                RotationJob.objects.using("kek")
                .select_for_update()
                .filter(kind=kind, state=RotationJob.State.RUNNING)
                .order_by("started_at")
            )
            job = next((j for j in running if j.scope == scope), None)
            if exclusive:
                other = next((j for j in running if j.scope != scope), None)
                if other is not None:
                    raise JobBusy(
                        f"an unfinished {kind} job exists for {other.scope} ({other.id}); finish it first "
                        f"(run the command again with that scope) or release it"
                    )
            if job is None:
                job = RotationJob.objects.using("kek").create(
                    kind=kind, scope=scope, params=params or {}, started_at=now, lease_owner=me, lease_until=now + lease
                )
                return job, False
            if job.lease_owner != me and lease_alive(job):
                raise JobBusy(
                    f"{kind} job {job.id} for {scope} is being run by {job.lease_owner}; wait for it to finish"
                )
            job.lease_owner, job.lease_until = me, now + lease
            job.save(using="kek", update_fields=["lease_owner", "lease_until", "updated_at"])
            return job, True
    except DbIntegrityError:
        # Only reachable without the claim lock's protection (e.g. a foreign writer): same answer.
        raise JobBusy(f"another process claimed the {kind} job for {scope} at the same time; try again") from None


def job_advance(job: RotationJob, *, processed: int = 0, cursor: str | None = None, **fields: Any) -> None:
    """Record progress and renew the lease (call after each committed batch).

    A compare-and-set on the lease owner: raises :class:`LeaseLost` when another
    process took the job over (nothing is written then).
    """
    job.processed += processed
    if cursor is not None:
        job.cursor = cursor
    for name, value in fields.items():
        setattr(job, name, value)
    job.lease_until = timezone.now() + lease_duration()
    changes = {name: getattr(job, name) for name in ("processed", "cursor", "lease_until", *fields)}
    changes["updated_at"] = timezone.now()
    with transaction.atomic(using="kek"):
        updated = (
            RotationJob.objects.using("kek")
            .filter(id=job.id, lease_owner=job.lease_owner, state=RotationJob.State.RUNNING)
            .update(**changes)
        )
    if updated != 1:
        raise LeaseLost(f"{job.kind} job {job.id} for {job.scope} was taken over by another process; stopping")


def job_finish(job: RotationJob) -> None:
    """Mark the job done (compare-and-set on the lease owner, like :func:`job_advance`)."""
    now = timezone.now()
    with transaction.atomic(using="kek"):
        updated = (
            RotationJob.objects.using("kek")
            .filter(id=job.id, lease_owner=job.lease_owner, state=RotationJob.State.RUNNING)
            .update(state=RotationJob.State.DONE, finished_at=now, lease_owner="", lease_until=None, updated_at=now)
        )
    if updated != 1:
        raise LeaseLost(f"{job.kind} job {job.id} for {job.scope} was taken over by another process; stopping")
    job.state, job.finished_at, job.lease_owner, job.lease_until = RotationJob.State.DONE, now, "", None


@contextmanager
def job_heartbeat(job: RotationJob) -> Iterator[None]:
    """Renew ``job``'s lease from a thread every fifth of the lease while the block runs.

    Batches renew it too; the thread covers a long batch.  A failed renewal
    (lease lost) stops the thread; the next :func:`job_advance` then raises.
    """
    stop = threading.Event()
    owner = job.lease_owner

    def beat() -> None:
        try:
            while not stop.wait(lease_duration().total_seconds() / 5):
                with transaction.atomic(using="kek"):
                    renewed = (
                        RotationJob.objects.using("kek")
                        .filter(id=job.id, lease_owner=owner, state=RotationJob.State.RUNNING)
                        .update(lease_until=timezone.now() + lease_duration())
                    )
                if not renewed:
                    return
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"lease-{job.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


# --- fencing tokens on the default database --------------------------------------------------
def job_fence_take(job: RotationJob) -> None:
    """Record on default that ``job``'s current owner is the only one allowed to write."""
    with transaction.atomic():
        updated = RotationLease.objects.filter(job_id=job.id).update(owner=job.lease_owner, updated_at=timezone.now())
        if not updated:
            RotationLease.objects.create(job_id=job.id, owner=job.lease_owner)


def job_fence_check(job: RotationJob) -> None:
    """Inside a default transaction: lock the fence row; raise :class:`LeaseLost` unless it is ours."""
    ours = RotationLease.objects.select_for_update().filter(job_id=job.id, owner=job.lease_owner).exists()
    if not ours:
        raise LeaseLost(f"{job.kind} job {job.id} for {job.scope} was taken over by another process; stopping")


def job_fence_drop(job: RotationJob) -> None:
    RotationLease.objects.filter(job_id=job.id).delete()


# --- operators -------------------------------------------------------------------------------
def jobs_list(*, include_done: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Running jobs (and the latest finished ones with ``include_done``), newest first."""
    jobs = RotationJob.objects.using("kek").all()
    if not include_done:
        jobs = jobs.filter(state=RotationJob.State.RUNNING)
    now = timezone.now()
    return [
        {
            "id": str(j.id),
            "kind": j.kind,
            "scope": j.scope,
            "state": j.state,
            "phase": j.phase,
            "processed": j.processed,
            "total": j.total,
            "lease_owner": j.lease_owner,
            "lease_until": j.lease_until.isoformat() if j.lease_until else None,
            "lease_expired": j.lease_until is None or j.lease_until < now,
            "started_at": j.started_at.isoformat(),
            "updated_at": j.updated_at.isoformat(),
        }
        for j in jobs.order_by("-started_at")[:limit]
    ]


def job_release(*, job_id: Any, force: bool = False) -> dict[str, Any]:
    """Drop the lease of a running job so that the next run of its command resumes it at once.

    Refused while the lease is alive unless ``force`` (the operator knows the
    owner is gone: a machine that will not come back).  The default-database
    fence is cleared first, so a frozen owner that wakes up later cannot write
    any more; its next batch stops with :class:`LeaseLost`.
    """
    job = RotationJob.objects.using("kek").filter(id=job_id).first()
    if job is None:
        raise HierarchyError(f"rotation job {job_id} does not exist")
    if job.state != RotationJob.State.RUNNING:
        raise HierarchyError(f"rotation job {job.id} is {job.state}, not running: nothing to release")
    if not force and job.lease_owner and lease_alive(job):
        raise JobBusy(
            f"rotation job {job.id} is held by {job.lease_owner} until {job.lease_until:%Y-%m-%d %H:%M:%S}Z; "
            "wait for it, or release it with --force if that owner is gone for good"
        )
    with transaction.atomic():
        RotationLease.objects.filter(job_id=job.id).update(owner="", updated_at=timezone.now())
    with transaction.atomic(using="kek"):
        released = (
            RotationJob.objects.using("kek")
            .filter(id=job.id, lease_owner=job.lease_owner, state=RotationJob.State.RUNNING)
            .update(lease_owner="", lease_until=None, updated_at=timezone.now())
        )
    if not released:
        raise JobBusy(f"rotation job {job.id} changed hands while being released; look again")
    return {
        "job": str(job.id),
        "kind": job.kind,
        "scope": job.scope,
        "released_owner": job.lease_owner,
        "forced": force,
    }
