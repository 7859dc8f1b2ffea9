"""Read-side queries of the console: everything is filtered through ``access.visible``/``can``.

Nothing here decrypts: payloads are read only by the guarded secret services.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from hkms_core.access.models import RoleGrant
from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import can, principal_grants, project_ids_with, visible
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from hkms_core.tenancy.models import Project
from keys_app.models import Key, RotationJob
from keys_app.services.inspection import hierarchy_status
from secrets_app.models import Secret, SecretVersion, VersionStatus
from secrets_app.services import secrets_visible

EXPIRING_WITHIN = timedelta(days=7)
_GRANTING = {str(Action.SECRET_ADMIN), str(Action.KEY_ADMIN), str(Action.ROLES_MANAGE)}


# --- what the principal may use ----------------------------------------------------------
def principal_can_audit(principal: Principal) -> bool:
    return principal.is_superuser or bool(project_ids_with(principal, Action.AUDIT_READ))


def principal_can_grant(principal: Principal) -> bool:
    if principal.is_superuser:
        return True
    return any(codes & _GRANTING for codes in principal_grants(principal).values())


# --- audit log ---------------------------------------------------------------------------
def audit_events_visible(principal: Principal) -> QuerySet[AuditEvent]:
    """Superusers: every event; auditors: the events of the projects they audit."""
    events = AuditEvent.objects.all()
    if principal.is_superuser:
        return events
    return events.filter(project_id__in=sorted(project_ids_with(principal, Action.AUDIT_READ)))


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    object_id: str = ""
    object_type: str = ""
    project_id: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None


def audit_events_filtered(principal: Principal, f: AuditFilter) -> QuerySet[AuditEvent]:
    events = audit_events_visible(principal)
    if f.actor:
        events = events.filter(actor=f.actor)
    if f.action:
        events = events.filter(action__startswith=f.action)
    if f.object_id:
        events = events.filter(object_id=f.object_id)
    if f.object_type:
        events = events.filter(object_type=f.object_type)
    if f.project_id:
        events = events.filter(project_id=f.project_id)
    if f.outcome:
        events = events.filter(outcome=f.outcome)
    if f.since:
        events = events.filter(created_at__gte=f.since)
    if f.until:
        events = events.filter(created_at__lt=f.until)
    return events


def audit_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts in chain order (the ``export_audit_log`` shape)."""
    for event in events.order_by("seq").iterator(chunk_size=2000):
        yield {
            "seq": event.seq,
            "created_at": event.created_at.isoformat(timespec="microseconds"),
            "actor": event.actor,
            "actor_user_id": event.actor_user_id,
            "api_key": event.api_key,
            "via": event.via,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "project_id": event.project_id,
            "outcome": event.outcome,
            "source_ip": event.source_ip,
            "request_id": event.request_id,
            "detail": event.detail,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }


def audit_chain_status(*, fresh: bool = False) -> dict[str, Any]:
    """``audit_verify()``, cached for a minute per process (the dashboard must stay fast)."""
    if fresh:
        cache.delete("hkms:console:audit-verify")
    result = cache.get_or_set("hkms:console:audit-verify", lambda: {**audit_verify(), "at": timezone.now()}, 60)
    return dict(result or {})


# --- secrets -----------------------------------------------------------------------------
def normalise_path(raw: str) -> str:
    raw = "/" + (raw or "").strip().strip("/")
    return raw if raw == "/" else raw + "/"


@dataclass(frozen=True)
class SecretFilter:
    q: str = ""
    project_id: str = ""
    path: str = ""
    recursive: bool = True
    tags: tuple[str, ...] = ()
    type: str = ""
    status: str = ""


def secrets_filtered(principal: Principal, f: SecretFilter) -> QuerySet[Secret]:
    secrets = secrets_visible(principal=principal).select_related("key")
    if f.q:
        secrets = secrets.filter(Q(name__icontains=f.q) | Q(description__icontains=f.q))
    if f.project_id:
        project_id = _uuid_or_none(f.project_id)
        secrets = secrets.filter(project_id=project_id) if project_id else secrets.none()
    if f.path:
        path = normalise_path(f.path)
        exact = Q(path=path) | Q(path=path.rstrip("/") or "/")
        secrets = secrets.filter(exact | Q(path__startswith=path)) if f.recursive else secrets.filter(exact)
    if f.type:
        secrets = secrets.filter(type=f.type)
    if f.status == "scheduled_for_deletion":
        secrets = secrets.filter(deletion_requested_at__isnull=False)
    elif f.status == "protected":
        secrets = secrets.filter(protected=True, deletion_requested_at__isnull=True)
    elif f.status in {Secret.Status.READY, Secret.Status.LOCKED}:
        secrets = secrets.filter(status=f.status, deletion_requested_at__isnull=True)
    if f.tags:
        # JSON containment is not portable to SQLite: filter the (already narrowed) rows' tags here.
        wanted = set(f.tags)
        ids = [s_id for s_id, tags in secrets.values_list("id", "tags") if wanted <= set(tags or [])]
        secrets = secrets.filter(id__in=ids)
    return secrets.order_by("path", "name")


def secret_folders(principal: Principal, f: SecretFilter) -> list[dict[str, str]]:
    """The immediate sub-folders of ``f.path`` among the secrets the principal may see."""
    base = normalise_path(f.path)
    scoped = secrets_filtered(
        principal,
        SecretFilter(
            q=f.q, project_id=f.project_id, type=f.type, status=f.status, tags=f.tags, path=base, recursive=True
        ),
    )
    folders: dict[str, int] = {}
    for raw in scoped.values_list("path", flat=True):
        path = normalise_path(raw)
        if path != base and path.startswith(base):
            child = base + path[len(base) :].split("/", 1)[0] + "/"
            folders[child] = folders.get(child, 0) + 1
    return [{"path": p, "name": p[len(base) :].rstrip("/"), "count": str(n)} for p, n in sorted(folders.items())]


def projects_visible(principal: Principal) -> QuerySet[Project]:
    return visible(principal, Project.objects.all()).order_by("name")


def _uuid_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


# --- dashboard ---------------------------------------------------------------------------
_BAR_COLOURS = {"primary": "#2f855a", "older": "#d69e2e", "retired": "#a0aec0", "destroyed": "#c53030"}


def key_chart(keys: list[dict[str, Any]], *, width: int = 560) -> dict[str, Any]:
    """Geometry of a bar chart, one bar per key version (DEKs it wraps), for an inline SVG."""
    label_width, row, top = 190, 22, 8
    rows = [(k, v) for k in keys for v in k["versions"]]
    biggest = max([int(v["deks"]) for _, v in rows] + [1])
    bars = []
    for i, (key, version) in enumerate(rows):
        if version["state"] == "destroyed":
            kind = "destroyed"
        elif version["primary"]:
            kind = "primary"
        elif version["state"] == "retired":
            kind = "retired"
        else:
            kind = "older"
        y = top + i * row
        bar = int((width - label_width - 60) * int(version["deks"]) / biggest)
        bars.append(
            {
                "label": f"{key['name'][:22]} v{version['version']}",
                "y": y,
                "text_y": y + 14,
                "x": label_width,
                "width": max(bar, 2),
                "count": version["deks"],
                "count_x": label_width + max(bar, 2) + 6,
                "fill": _BAR_COLOURS[kind],
                "kind": kind,
            }
        )
    return {"width": width, "height": top * 2 + row * max(len(rows), 1), "bars": bars, "legend": _BAR_COLOURS}


def dashboard_summary(principal: Principal, *, now: datetime | None = None) -> dict[str, Any]:
    """The hierarchy at a glance, limited to the keys and secrets the principal may see."""
    now = now or timezone.now()
    status = hierarchy_status()
    key_qs = visible(principal, Key.objects.all())
    key_ids = {str(k) for k in key_qs.values_list("id", flat=True)}
    keys = [k for k in status["keys"] if k["id"] in key_ids]
    secrets = visible(principal, Secret.objects.all())
    versions = SecretVersion.objects.filter(secret__in=secrets)
    version_counts = dict(versions.values_list("status").annotate(n=Count("id")).order_by())
    audit = principal_can_audit(principal)
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
        "secrets": secrets.count(),
        "version_counts": {str(k): v for k, v in version_counts.items()},
        "due_keys": list(
            key_qs.filter(next_rotation_at__lte=now, state="enabled")
            .select_related("project")
            .order_by("next_rotation_at")
        ),
        "expiring_versions": list(
            versions.filter(
                status=VersionStatus.ENABLED, expires_at__isnull=False, expires_at__lte=now + EXPIRING_WITHIN
            )
            .select_related("secret")
            .order_by("expires_at")[:20]
        ),
        "scheduled_secrets": list(
            secrets.filter(deletion_requested_at__isnull=False).order_by("-deletion_requested_at")[:20]
        ),
        "scheduled_versions": version_counts.get(VersionStatus.SCHEDULED_FOR_DELETION, 0),
        "recent_events": list(audit_events_visible(principal).order_by("-seq")[:10]) if audit else None,
        "chain": audit_chain_status() if audit else None,
        "jobs": jobs,
        "chart": key_chart(keys),
    }


# --- roles -------------------------------------------------------------------------------
def grant_targets(principal: Principal) -> list[tuple[str, str]]:
    """``("project:<id>", label)`` … for the objects on which the principal may grant some role."""
    targets: list[tuple[str, str]] = []
    for project in visible(principal, Project.objects.all()).order_by("name"):
        if (
            can(principal, Action.ROLES_MANAGE, project)
            or can(principal, Action.SECRET_ADMIN, project)
            or can(principal, Action.KEY_ADMIN, project)
        ):
            targets.append((f"project:{project.id}", f"project {project.name}"))
    for secret in visible(principal, Secret.objects.select_related("project"), Action.SECRET_ADMIN).order_by(
        "project__name", "path", "name"
    ):
        targets.append(
            (f"secret:{secret.id}", f"secret {secret.project.name}:{normalise_path(secret.path)}{secret.name}")
        )
    for key in visible(principal, Key.objects.select_related("project"), Action.KEY_ADMIN).order_by(
        "project__name", "name"
    ):
        targets.append((f"key:{key.id}", f"key {key.project.name}:{key.name}"))
    return targets


def grant_target(principal: Principal, value: str) -> Any:
    """The project, secret or key named ``kind:id`` among the principal's visible objects, or None."""
    kind, _, raw = (value or "").partition(":")
    models: dict[str, Any] = {"project": Project, "secret": Secret, "key": Key}
    object_id = _uuid_or_none(raw)
    if kind not in models or object_id is None:
        return None
    return visible(principal, models[kind].objects.all()).filter(id=object_id).first()


def grants_visible(principal: Principal) -> QuerySet[RoleGrant]:
    """Role grants on objects the principal may grant on (superusers: all)."""
    grants = RoleGrant.objects.select_related("user", "content_type").order_by(
        "project_id", "content_type", "created_at"
    )
    if principal.is_superuser:
        return grants
    targets = grant_targets(principal)
    cts = {
        kind: ContentType.objects.get_for_model(m)
        for kind, m in (("project", Project), ("secret", Secret), ("key", Key))
    }
    condition = Q(pk__in=[])
    for value, _label in targets:
        kind, _, object_pk = value.partition(":")
        condition |= Q(content_type=cts[kind], object_pk=object_pk)
    return grants.filter(condition)


def job_for_key(key: Key) -> RotationJob | None:
    """The latest DEK re-wrap job of ``key`` (running or done), for the progress display."""
    return (
        RotationJob.objects.using("kek")
        .filter(kind=RotationJob.Kind.REWRAP_DEKS, scope=f"key:{key.id}")
        .order_by("-started_at")
        .first()
    )


def key_versions(key: Key) -> list[dict[str, Any]]:
    """A key's KEK versions with the number of DEKs each wraps (kek and dek databases, one query each)."""
    from keys_app.models import Dek, KekVersion

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


# --- what a destructive action stops (confirmation pages) --------------------------------
def key_dependents(key: Key) -> dict[str, Any]:
    """Counts behind a key: live secrets and versions it protects, projects it is the default key of."""
    secrets = Secret.objects.filter(key_id=key.id)
    versions = SecretVersion.objects.filter(secret__key_id=key.id).exclude(status=VersionStatus.DELETED)
    return {
        "secrets": secrets.count(),
        "versions": versions.count(),
        "enabled_versions": versions.filter(status=VersionStatus.ENABLED).count(),
        "default_of": list(Project.objects.filter(default_key_id=key.id).values_list("name", flat=True)),
    }


def version_successor(secret: Secret, revision: int) -> dict[str, Any]:
    """Whether ``revision`` is the latest enabled one, and which enabled revision would take its place."""
    enabled = sorted(
        secret.versions.filter(status=VersionStatus.ENABLED).values_list("revision", flat=True), reverse=True
    )
    is_latest = bool(enabled) and enabled[0] == revision
    others = [r for r in enabled if r != revision]
    return {"is_latest_enabled": is_latest, "next_latest_enabled": others[0] if others else None}


API_KEY_USAGE_WINDOW = timedelta(days=30)


def api_key_usage(access_key: str, *, now: datetime | None = None) -> dict[str, Any]:
    """What the audit log says of an API key's recent use (the applications that would break)."""
    since = (now or timezone.now()) - API_KEY_USAGE_WINDOW
    events = AuditEvent.objects.filter(created_at__gte=since, api_key=access_key)
    last = events.order_by("-created_at").values("created_at", "source_ip").first()
    sources = list(events.values_list("source_ip", flat=True).distinct()[:6])
    return {
        "events": events.count(),
        "last_used_at": last["created_at"] if last else None,
        "sources": [s for s in sources if s][:5],
        "more_sources": len(sources) > 5,
        "window_days": API_KEY_USAGE_WINDOW.days,
    }
