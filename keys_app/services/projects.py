"""Projects with their default key: creation, and the default-key rule.

A project (hkms_core.tenancy) names its default key by a plain UUID column,
``Project.default_key_id``: the foundation does not point up at keys_app.  The
guarantee the old ``PROTECT`` foreign key gave is kept here, in the layer that
owns keys:

* **A project's default key is never deleted.**  ``key_delete`` refuses to
  schedule it (``PreconditionFailed("project_default_key")``), and
  ``keys_purge_deleted`` keeps the row of a due key that some project still
  names as its default (:func:`key_is_a_project_default`), as it keeps the row
  of a key a secret still names.  A default key id therefore always resolves
  to a ``Key`` row (possibly disabled).

Creation order: the project row, then its key (KEK version 1 committed on kek
first, see keys_app.services.material), then ``default_key_id`` — in one
transaction on default, so a project is never visible without its default key;
a crash leaves at most an unreferenced KEK row, which is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db import IntegrityError, transaction

from hkms_core.access.principal import Principal
from hkms_core.access.projects import project_default_organization
from hkms_core.audit.services import audit_record
from hkms_core.errors import Conflict, InvalidArgument, PermissionDenied
from hkms_core.tenancy.models import Project
from keys_app.models import Key
from keys_app.services.material import key_create_with_material


@transaction.atomic
def project_create_with_default_key(
    *, name: str, organization_id: uuid.UUID | None = None, description: str = ""
) -> Project:
    """A project and its default key (the KEK of secrets that name no key); unguarded, unaudited."""
    project = Project.objects.create(
        name=name, organization_id=organization_id or uuid.uuid4(), description=description
    )
    key = key_create_with_material(project=project, name=f"{name}-default", description="Project default key")
    project.default_key_id = key.id
    project.save(update_fields=["default_key_id"])
    return project


def project_create(
    *, principal: Principal, name: str, organization_id: uuid.UUID | None = None, description: str = ""
) -> Project:
    """Create a project and its default key; superusers only.

    Without ``organization_id`` the project joins the installation's organisation
    (:func:`~hkms_core.access.projects.project_default_organization`), a new one
    for the very first project.  Names are unique within an organisation: a second
    ``shop`` is refused with :class:`Conflict`; the check is the database's unique
    constraint, so two concurrent creations cannot both succeed.
    """
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
            project = project_create_with_default_key(
                name=name, organization_id=organization_id, description=description
            )
            audit_record(principal, "project.create", project, name=name)
    except IntegrityError:  # a concurrent creation of the same name won the unique constraint
        raise taken from None
    return project


def project_default_key(project: Project) -> Key | None:
    """The project's default key (``None`` if it has none)."""
    if project.default_key_id is None:
        return None
    return Key.objects.filter(id=project.default_key_id).first()


def project_default_keys(projects: Iterable[Project]) -> dict[uuid.UUID, Key]:
    """``{project id: default key}`` of ``projects`` that have one (one query)."""
    by_key = {p.default_key_id: p.id for p in projects if p.default_key_id is not None}
    return {by_key[key.id]: key for key in Key.objects.filter(id__in=list(by_key))}


def key_is_a_project_default(key_id: uuid.UUID) -> bool:
    """Whether some project names ``key_id`` as its default key (such a key is never deleted)."""
    return Project.objects.filter(default_key_id=key_id).exists()
