"""Read-only listings for the operator commands ``list_projects`` and ``list_roles``.

Each returns JSON-ready dicts (ids as strings, instants in ISO 8601) of what the
principal may see: an operator on the command line sees everything.  Nothing
here touches the kek or dek databases: key *metadata* lives on ``default``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from hkms_core.access.models import RoleGrant
from hkms_core.access.principal import Principal
from hkms_core.access.projects import project_get
from hkms_core.access.services import visible
from hkms_core.tenancy.models import Project


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def projects_list(*, principal: Principal) -> list[dict[str, Any]]:
    """Projects with their organisation, default key and how many secrets and keys they hold."""
    qs = visible(principal, Project.objects.all()).annotate(
        n_secrets=Count("secrets", distinct=True), n_keys=Count("keys", distinct=True)
    )
    return [
        {
            "id": str(p.id),
            "name": p.name,
            "organization_id": str(p.organization_id),
            "default_key_id": str(p.default_key_id) if p.default_key_id else None,
            "secrets": p.n_secrets,
            "keys": p.n_keys,
            "created_at": iso(p.created_at),
        }
        for p in qs.order_by("organization_id", "name", "id")
    ]


def role_grants_list(
    *, principal: Principal, username: str | None = None, project: str | None = None
) -> list[dict[str, Any]]:
    """Role grants (who holds which role on what), optionally of one user or within one project."""
    if not principal.is_superuser:
        return []
    qs = RoleGrant.objects.select_related("user", "content_type").order_by("project_id", "created_at", "id")
    if username:
        qs = qs.filter(user__username=username)
    if project:
        qs = qs.filter(project_id=project_get(principal=principal, project_id=project).id)
    return [
        {
            "user": g.user.get_username(),
            "role": g.role,
            "object_type": g.content_type.model,
            "object_id": g.object_pk,
            "project_id": str(g.project_id),
            "granted_by": g.granted_by,
            "created_at": iso(g.created_at),
        }
        for g in qs
    ]
