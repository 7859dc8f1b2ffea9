"""Resumable job records for long rotations (kek database).

A job is identified by ``(kind, scope)``.  Claiming it either creates it or
continues the running one left by an interrupted process; a live process
holding the lease makes the claim fail with :class:`JobBusy`.  A lease is
dead when it expired or when its owner is a process of this host that no
longer exists, so a re-run right after a ``kill -9`` continues at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from keys_app.errors import HierarchyError
from keys_app.models import RotationJob
from keys_app.processes import pid_alive

LEASE = timedelta(minutes=5)
Progress = Callable[[int, int], None]


class JobBusy(HierarchyError):
    code = "job_busy"


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _lease_alive(job: RotationJob) -> bool:
    if not job.lease_owner or job.lease_until is None or job.lease_until < timezone.now():
        return False
    host, _, pid = job.lease_owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return True


def job_running(kind: str, scope: str | None = None) -> RotationJob | None:
    jobs = RotationJob.objects.using("kek").filter(kind=kind, state=RotationJob.State.RUNNING)
    if scope is not None:
        jobs = jobs.filter(scope=scope)
    return jobs.first()


def job_claim(kind: str, scope: str, params: dict[str, Any] | None = None) -> tuple[RotationJob, bool]:
    """The running job for ``(kind, scope)`` (resumed) or a new one; returns ``(job, resumed)``."""
    me = lease_owner()
    now = timezone.now()
    with transaction.atomic(using="kek"):
        job = (
            RotationJob.objects.using("kek")
            .select_for_update()
            .filter(kind=kind, scope=scope, state=RotationJob.State.RUNNING)
            .first()
        )
        if job is None:
            job = RotationJob.objects.using("kek").create(
                kind=kind, scope=scope, params=params or {}, started_at=now, lease_owner=me, lease_until=now + LEASE
            )
            return job, False
        if job.lease_owner != me and _lease_alive(job):
            raise JobBusy(f"{kind} job {job.id} for {scope} is being run by {job.lease_owner}; wait for it to finish")
        job.lease_owner, job.lease_until = me, now + LEASE
        job.save(using="kek", update_fields=["lease_owner", "lease_until", "updated_at"])
        return job, True


def job_advance(job: RotationJob, *, processed: int = 0, cursor: str | None = None, **fields: Any) -> None:
    """Record progress and renew the lease (call after each committed batch)."""
    job.processed += processed
    if cursor is not None:
        job.cursor = cursor
    for name, value in fields.items():
        setattr(job, name, value)
    job.lease_until = timezone.now() + LEASE
    job.save(using="kek")


def job_finish(job: RotationJob) -> None:
    job.state = RotationJob.State.DONE
    job.finished_at = timezone.now()
    job.lease_owner, job.lease_until = "", None
    job.save(using="kek")
