"""Read-only listing of Key Manager keys for the operator command ``list_keys``.

JSON-ready dicts (ids as strings, instants in ISO 8601) of what the principal
may see: an operator on the command line sees everything.  Key *metadata* only:
nothing here touches the kek or dek databases.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from hkms_core.access.listing import iso
from hkms_core.access.principal import Principal
from hkms_core.access.projects import project_get
from hkms_core.access.services import visible
from keys_app.models import Key


def keys_list(
    *, principal: Principal, project: str | None = None, include_deleted: bool = True
) -> list[dict[str, Any]]:
    """Key Manager keys (metadata only) with their state, primary version and rotation policy."""
    qs = visible(principal, Key.objects.all()).select_related("project")
    if project:
        qs = qs.filter(project_id=project_get(principal=principal, project_id=project).id)
    if not include_deleted:
        qs = qs.filter(~Q(state="scheduled_for_deletion"))
    return [
        {
            "id": str(k.id),
            "name": k.name,
            "project_id": str(k.project_id),
            "project": k.project.name,
            "state": k.state,
            "usage": k.usage,
            "algorithm": k.algorithm,
            "origin": k.origin,
            "protected": k.protected,
            "primary_version": k.primary_version,
            "rotation_count": k.rotation_count,
            "rotated_at": iso(k.rotated_at),
            "rotation_period_seconds": int(k.rotation_period.total_seconds()) if k.rotation_period else None,
            "next_rotation_at": iso(k.next_rotation_at),
            "deletion_requested_at": iso(k.deletion_requested_at),
            "created_at": iso(k.created_at),
        }
        for k in qs.order_by("project_id", "name", "id")
    ]
