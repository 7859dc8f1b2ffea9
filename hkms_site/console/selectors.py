"""Read-side queries of the console's own: the audit log, roles, API key use, the dashboard.

Secret and key reads come from the apps' selectors (:mod:`secrets_app.selectors`,
:mod:`keys_app.selectors`): the console never queries the kek or dek databases or
their models itself.  Everything is filtered through ``access.visible``/``can``.
Nothing here decrypts: payloads are read only by the guarded secret services.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from hkms_core.access.models import RoleGrant
from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import can, principal_grants, project_ids_with
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from hkms_core.tenancy.models import Project
from keys_app.models import Key
from keys_app.selectors import hierarchy_overview, keys_due_for_rotation, keys_visible
from secrets_app.models import Secret
from secrets_app.selectors import projects_visible, secrets_overview, secrets_visible

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
    hierarchy = hierarchy_overview(principal)
    audit = principal_can_audit(principal)
    return {
        **hierarchy,
        **secrets_overview(principal, now=now, expiring_within=EXPIRING_WITHIN),
        "due_keys": keys_due_for_rotation(principal, now=now),
        "recent_events": list(audit_events_visible(principal).order_by("-seq")[:10]) if audit else None,
        "chain": audit_chain_status() if audit else None,
        "chart": key_chart(hierarchy["keys"]),
    }


# --- roles -------------------------------------------------------------------------------
def grant_targets(principal: Principal) -> list[tuple[str, str]]:
    """``("project:<id>", label)`` … for the objects on which the principal may grant some role."""
    targets: list[tuple[str, str]] = []
    for project in projects_visible(principal):
        if (
            can(principal, Action.ROLES_MANAGE, project)
            or can(principal, Action.SECRET_ADMIN, project)
            or can(principal, Action.KEY_ADMIN, project)
        ):
            targets.append((f"project:{project.id}", f"project {project.name}"))
    for secret in secrets_visible(principal=principal, action=Action.SECRET_ADMIN).order_by(
        "project__name", "path", "name"
    ):
        targets.append(
            (f"secret:{secret.id}", f"secret {secret.project.name}:{normalise_path(secret.path)}{secret.name}")
        )
    for key in keys_visible(principal, Action.KEY_ADMIN).order_by("project__name", "name"):
        targets.append((f"key:{key.id}", f"key {key.project.name}:{key.name}"))
    return targets


def grant_target(principal: Principal, value: str) -> Any:
    """The project, secret or key named ``kind:id`` among the principal's visible objects, or None."""
    kind, _, raw = (value or "").partition(":")
    listings: dict[str, Callable[[], QuerySet[Any]]] = {
        "project": lambda: projects_visible(principal),
        "secret": lambda: secrets_visible(principal=principal),
        "key": lambda: keys_visible(principal),
    }
    object_id = _uuid_or_none(raw)
    if kind not in listings or object_id is None:
        return None
    return listings[kind]().filter(id=object_id).first()


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
