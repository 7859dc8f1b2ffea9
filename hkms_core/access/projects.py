"""Project services (guarded and audited)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction

from hkms_core.access.principal import Principal
from hkms_core.access.services import visible
from hkms_core.errors import Conflict, InvalidArgument, ObjectNotFound, PermissionDenied
from secrets_app.models import Project


def project_default_organization() -> uuid.UUID | None:
    """The installation's organisation: that of its oldest project (``None`` before the first)."""
    first = Project.objects.order_by("created_at", "id").values_list("organization_id", flat=True).first()
    return first


def project_create(
    *, principal: Principal, name: str, organization_id: uuid.UUID | None = None, description: str = ""
) -> Project:
    """Create a project and its default key; superusers only.

    Without ``organization_id`` the project joins the installation's organisation
    (:func:`project_default_organization`), a new one for the very first project.
    Names are unique within an organisation: a second ``shop`` is refused with
    :class:`Conflict`; the check is the database's unique constraint, so two
    concurrent creations cannot both succeed.
    """
    from hkms_core.audit.services import audit_record
    from secrets_app.storage import project_create as store_project

    if not principal.is_superuser:
        raise PermissionDenied("project.create", "project", "")
    name = name.strip()
    if not 1 <= len(name) <= 255:
        raise InvalidArgument("name", "must be 1 to 255 characters")
    try:
        uuid.UUID(name)
    except ValueError:
        pass
    else:
        raise InvalidArgument("name", "must not be a UUID (projects are looked up by id or by name)")
    organization_id = organization_id or project_default_organization()
    taken = Conflict(f"a project named {name!r} already exists in organization {organization_id}")
    if organization_id is not None and Project.objects.filter(organization_id=organization_id, name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            project = store_project(name=name, organization_id=organization_id, description=description)
            audit_record(principal, "project.create", project, name=name)
    except IntegrityError:  # a concurrent creation of the same name won the unique constraint
        raise taken from None
    return project


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
