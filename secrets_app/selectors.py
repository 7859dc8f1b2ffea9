"""Read-only queries of the Secret Manager: listings with filters, folder browsing, the
tags and types in use, and the counts the console's dashboard and confirmation pages show.

The one place the API and the console read secret metadata from.  Every listing starts
from :func:`secrets_visible` (``access.visible``): a principal never sees a row it may
not view.  Nothing here writes, audits or decrypts, and nothing touches the key
databases (payloads are read only by :mod:`secrets_app.services.access`).  A malformed
filter answers ``InvalidArgument`` (a malformed project or organization id ``ObjectNotFound``),
never a silently empty list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import project_ids_with, visible
from hkms_core.errors import InvalidArgument
from hkms_core.lifecycle import ORDERINGS
from hkms_core.queries import filter_json_list_contains
from hkms_core.tenancy.models import Project
from keys_app.models import Key
from secrets_app import validation
from secrets_app.models import Secret, SecretType, SecretVersion, VersionStatus
from secrets_app.services.lookups import parse_id


@dataclass(frozen=True)
class SecretFilter:
    """What a secret listing keeps; every field left at its default keeps everything.

    ``path`` is a folder: with ``recursive`` the folders below it count too.
    ``scheduled_for_deletion``: False live secrets only (the API's default), True the
    scheduled ones only, None both.  ``text``: name or description contains it, any case.
    """

    organization_id: Any = None
    project_id: Any = None
    tags: tuple[str, ...] = ()
    name: str | None = None
    path: str | None = None
    recursive: bool = False
    ephemeral: bool | None = None
    type: str | None = None
    scheduled_for_deletion: bool | None = False
    protected: bool | None = None
    status: str | None = None
    text: str = ""


def _filter_text(value: str, field: str) -> str:
    """A free-text filter value; NUL cannot be stored, and PostgreSQL refuses it in a query."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def _ordering(order_by: str) -> tuple[str, ...]:
    if order_by not in ORDERINGS:
        raise InvalidArgument("order_by", f"must be one of {', '.join(ORDERINGS)}")
    return ORDERINGS[order_by]


def _in_folder(path: str, recursive: bool) -> Q:
    """The secrets in folder ``path`` (a validated path), and with ``recursive`` those below it."""
    exact = Q(path=path)
    return exact | Q(path__startswith=path.rstrip("/") + "/") if recursive else exact


def secrets_visible(
    *, principal: Principal, region: str | None = None, action: Action | None = None
) -> QuerySet[Secret]:
    """The secrets the principal may see (or, with ``action``, do it on), with their project."""
    qs = visible(principal, Secret.objects.select_related("project"), action)
    return qs.filter(region=region) if region is not None else qs


def secret_list(
    *,
    principal: Principal,
    region: str | None = None,
    filters: SecretFilter = SecretFilter(),
    order_by: str = "created_at_asc",
) -> QuerySet[Secret]:
    ordering = _ordering(order_by)
    qs = secrets_visible(principal=principal, region=region)
    if filters.organization_id:
        qs = qs.filter(project__organization_id=parse_id(filters.organization_id, "organization"))
    if filters.project_id:
        qs = qs.filter(project_id=parse_id(filters.project_id, "project"))
    qs = filter_json_list_contains(qs, "tags", [_filter_text(tag, "tags") for tag in filters.tags])
    if filters.name:
        qs = qs.filter(name=_filter_text(filters.name, "name"))
    if filters.text:
        text = _filter_text(filters.text, "q")
        qs = qs.filter(Q(name__icontains=text) | Q(description__icontains=text))
    if filters.path:
        qs = qs.filter(_in_folder(validation.secret_path(filters.path), filters.recursive))
    if filters.ephemeral is not None:
        ephemeral = Q(ephemeral_ttl__isnull=False) | Q(ephemeral_expires_once_accessed=True)
        qs = qs.filter(ephemeral) if filters.ephemeral else qs.exclude(ephemeral)
    if filters.type:
        qs = qs.filter(type=validation.secret_type(filters.type))
    if filters.protected is not None:
        qs = qs.filter(protected=filters.protected)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.scheduled_for_deletion is not None:
        qs = qs.filter(deletion_requested_at__isnull=not filters.scheduled_for_deletion)
    return qs.order_by(*ordering)


@dataclass(frozen=True)
class BrowseItem:
    """A secret of the folder, or a sub-folder (``secret`` None) with the ``count`` of secrets below it."""

    name: str
    created_at: datetime
    updated_at: datetime
    secret: Secret | None = None
    count: int = 1


def secret_browse(
    *,
    principal: Principal,
    region: str | None,
    project_id: Any,
    prefix: Any,
    order_by: str = "name_asc",
    tags: Iterable[str] = (),
    type: str | None = None,
    filters: SecretFilter | None = None,
) -> tuple[str, list[BrowseItem]]:
    """Folders directly under ``prefix`` and the secrets in it (like ``ls``): folders first.

    ``filters`` (its path ignored) replaces ``project_id``, ``tags`` and ``type``."""
    ordering = _ordering(order_by)
    current = validation.secret_path(prefix, "prefix")
    if filters is None:
        filters = SecretFilter(project_id=project_id, tags=tuple(tags), type=type)
    scoped = replace(filters, path=current, recursive=True)
    below = current.rstrip("/") + "/"
    folders: dict[str, BrowseItem] = {}
    items: list[BrowseItem] = []
    for secret in secret_list(principal=principal, region=region, filters=scoped, order_by=order_by):
        if secret.path == current:
            items.append(BrowseItem(secret.name, secret.created_at, secret.updated_at, secret))
            continue
        folder = secret.path[len(below) :].split("/", 1)[0]
        seen = folders.get(folder)
        if seen is None:
            folders[folder] = BrowseItem(folder, secret.created_at, secret.updated_at)
        else:
            created, updated = min(seen.created_at, secret.created_at), max(seen.updated_at, secret.updated_at)
            folders[folder] = BrowseItem(folder, created, updated, count=seen.count + 1)
    field = ordering[0].lstrip("-")
    ordered_folders = sorted(
        folders.values(), key=lambda item: getattr(item, field), reverse=order_by.endswith("_desc")
    )
    return current, [*ordered_folders, *items]


def _live_in(principal: Principal, region: str | None, project_id: Any) -> QuerySet[Secret]:
    qs = secrets_visible(principal=principal, region=region).filter(deletion_requested_at__isnull=True)
    return qs.filter(project_id=parse_id(project_id, "project")) if project_id else qs


def secret_tags(*, principal: Principal, region: str | None, project_id: Any = None) -> list[str]:
    """Tags in use in the visible live secrets (of the project), sorted."""
    found: set[str] = set()
    for row in _live_in(principal, region, project_id).values_list("tags", flat=True):
        found.update(row or [])
    return sorted(found)


def secret_types(*, principal: Principal, region: str | None, project_id: Any = None) -> list[str]:
    """Secret types in use in the visible live secrets (of the project)."""
    used = set(_live_in(principal, region, project_id).values_list("type", flat=True))
    return [t for t in SecretType.values if t in used]


def project_ids_readable(principal: Principal) -> set[str]:
    """Projects where the principal reads payloads project-wide (console helpers)."""
    return project_ids_with(principal, Action.SECRET_READ)


def projects_visible(principal: Principal, action: Action | None = None) -> QuerySet[Project]:
    """The projects the principal may see (or, with ``action``, do it in), by name."""
    return visible(principal, Project.objects.all(), action).order_by("name")


# --- counts (projects page, dashboard, confirmation pages) ------------------------------
def secret_counts_by_project(principal: Principal) -> dict[Any, int]:
    """``{project_id: number of visible secrets}``, projects without any left out."""
    secrets = secrets_visible(principal=principal).values_list("project_id")
    return dict(secrets.annotate(n=Count("id")).values_list("project_id", "n"))


def secrets_overview(principal: Principal, *, now: datetime, expiring_within: timedelta) -> dict[str, Any]:
    """The visible secrets at a glance: counts by version status, versions expiring soon,
    the latest secrets scheduled for deletion."""
    secrets = visible(principal, Secret.objects.all())
    versions = SecretVersion.objects.filter(secret__in=secrets)
    version_counts = dict(versions.values_list("status").annotate(n=Count("id")).order_by())
    return {
        "secrets": secrets.count(),
        "version_counts": {str(k): v for k, v in version_counts.items()},
        "expiring_versions": list(
            versions.filter(
                status=VersionStatus.ENABLED, expires_at__isnull=False, expires_at__lte=now + expiring_within
            )
            .select_related("secret")
            .order_by("expires_at")[:20]
        ),
        "scheduled_secrets": list(
            secrets.filter(deletion_requested_at__isnull=False).order_by("-deletion_requested_at")[:20]
        ),
        "scheduled_versions": version_counts.get(VersionStatus.SCHEDULED_FOR_DELETION, 0),
    }


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


def secret_dependents(secret: Secret) -> dict[str, int]:
    """What deleting ``secret`` stops: its live versions, and how many of them are enabled."""
    live = secret.versions.exclude(status=VersionStatus.DELETED)
    return {"versions": live.count(), "enabled_versions": live.filter(status=VersionStatus.ENABLED).count()}


def version_successor(secret: Secret, revision: int) -> dict[str, Any]:
    """Whether ``revision`` is the latest enabled one, and which enabled revision would take its place."""
    enabled = sorted(
        secret.versions.filter(status=VersionStatus.ENABLED).values_list("revision", flat=True), reverse=True
    )
    is_latest = bool(enabled) and enabled[0] == revision
    others = [r for r in enabled if r != revision]
    return {"is_latest_enabled": is_latest, "next_latest_enabled": others[0] if others else None}
