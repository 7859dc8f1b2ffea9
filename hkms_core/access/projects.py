"""Project look-ups, guarded by the access rules.

Creating a project also creates its default key, so it lives with keys:
keys_app.services.projects.project_create.
"""

from __future__ import annotations

import uuid
from typing import Any

from hkms_core.access.principal import Principal
from hkms_core.access.services import visible
from hkms_core.errors import InvalidArgument, ObjectNotFound
from hkms_core.tenancy.models import Project


def project_default_organization() -> uuid.UUID | None:
    """The installation's organisation: that of its oldest project (``None`` before the first)."""
    first = Project.objects.order_by("created_at", "id").values_list("organization_id", flat=True).first()
    return first


def project_get(*, principal: Principal, project_id: Any) -> Project:
    """A project the principal may see, by id or name (superusers: any)."""
    qs = visible(principal, Project.objects.all())
    try:
        project = qs.filter(id=uuid.UUID(str(project_id))).first()
    except ValueError:
        matches = list(qs.filter(name=str(project_id))[:2])
        if len(matches) > 1:
            raise InvalidArgument("project", f"several projects are named {project_id!r}; use its id") from None
        project = matches[0] if matches else None
    if project is None:
        raise ObjectNotFound("project", project_id)
    return project  # type: ignore[no-any-return]
