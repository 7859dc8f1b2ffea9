"""Read-only queries of the key hierarchy for the console: visible keys, a key's versions
with the DEKs each wraps, its latest re-wrap job, the hierarchy at a glance.

The one place the console reads the kek and dek databases through: it never queries
``KekVersion``, ``Dek``, ``RootKeyVersion`` or ``RotationJob`` itself.  Every key listing
starts from ``access.visible``; nothing here writes, audits or unwraps key material.
Cross-database counts are one query per database, never a join.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import visible
from keys_app.models import Dek, KekVersion, Key, KeyState, RotationJob
from keys_app.services.inspection import hierarchy_key_status
from keys_app.services.jobs import job_running


def keys_visible(principal: Principal, action: Action | None = None) -> QuerySet[Key]:
    """The keys the principal may see (or, with ``action``, do it with), with their project."""
    return visible(principal, Key.objects.select_related("project"), action)


def key_counts_by_project(principal: Principal) -> dict[Any, int]:
    """``{project_id: number of visible keys}``, projects without any left out."""
    keys = visible(principal, Key.objects.all(), Action.KEY_VIEW).values_list("project_id")
    return dict(keys.annotate(n=Count("id")).values_list("project_id", "n"))


def keys_usable_for_secrets(principal: Principal) -> QuerySet[Key]:
    """Enabled symmetric keys the principal may use: those it may name as a secret's key."""
    return keys_visible(principal, Action.KEY_USE).filter(usage="symmetric_encryption", state=KeyState.ENABLED)


def keys_due_for_rotation(principal: Principal, *, now: datetime) -> list[Key]:
    """Visible enabled keys whose scheduled rotation is due, the most overdue first."""
    due = keys_visible(principal).filter(next_rotation_at__lte=now, state=KeyState.ENABLED)
    return list(due.order_by("next_rotation_at"))


def hierarchy_overview(principal: Principal) -> dict[str, Any]:
    """``hierarchy_key_status`` limited to the keys the principal may see (and their running jobs)."""
    status = hierarchy_key_status()
    key_ids = {str(k) for k in visible(principal, Key.objects.all()).values_list("id", flat=True)}
    keys = [k for k in status["keys"] if k["id"] in key_ids]
    jobs = [
        j
        for j in status["running_jobs"]
        if principal.is_superuser or (j["scope"].startswith("key:") and j["scope"][4:] in key_ids)
    ]
    return {
        "root": status["root"],
        "initialised": status["initialised"],
        "keys": keys,
        "kek_versions": sum(len(k["versions"]) for k in keys),
        "deks": sum(int(v["deks"]) for k in keys for v in k["versions"]),
        "deks_on_older": sum(int(k["deks_on_older_versions"]) for k in keys),
        "jobs": jobs,
    }


def key_rewrap_job(key: Key) -> dict[str, Any] | None:
    """The latest DEK re-wrap job of ``key`` (running or done), for the progress display."""
    job = (
        RotationJob.objects.using("kek")
        .filter(kind=RotationJob.Kind.REWRAP_DEKS, scope=f"key:{key.id}")
        .order_by("-started_at")
        .first()
    )
    if job is None:
        return None
    return {
        "state": job.state,
        "running": job.state == RotationJob.State.RUNNING,
        "processed": job.processed,
        "total": job.total,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def key_rewrap_in_progress(key: Key, *, now: datetime) -> dict[str, int] | None:
    """The progress of a re-wrap of ``key``'s DEKs running under a live lease, or None."""
    running = job_running(RotationJob.Kind.REWRAP_DEKS, f"key:{key.id}")
    if running is None or running.lease_until is None or running.lease_until <= now:
        return None
    return {"processed": running.processed, "total": running.total}


def key_versions(key: Key) -> list[dict[str, Any]]:
    """A key's KEK versions with the number of DEKs each wraps (kek and dek databases, one query each)."""
    counts = dict(
        Dek.objects.using("dek").filter(key_id=key.id).values_list("kek_version").annotate(n=Count("id")).order_by()
    )
    return [
        {
            "version": v.version,
            "state": v.state,
            "rek_version": v.rek_version,
            "created_at": v.created_at,
            "primary": v.version == key.primary_version,
            "deks": counts.get(v.version, 0),
        }
        for v in KekVersion.objects.using("kek").filter(key_id=key.id).order_by("-version")
    ]
