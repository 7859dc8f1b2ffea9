"""Finding what a principal may act on: the secret, project or version a call names.

Every service starts here.  A missing object, one in another region and one the
principal may not see answer the same audited 404 (THREAT_MODEL.md, "No existence
oracles"); a malformed id is a 400 (``hkms_core.errors.parse_uuid``).  ``secret_locked`` is the locking rule of
:mod:`secrets_app.states`: a change re-reads its secret under the row lock, inside
``transaction.atomic()``, before it checks anything the change depends on.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, not_found_audited
from hkms_core.errors import InvalidArgument, ObjectNotFound, PreconditionFailed, parse_uuid
from hkms_core.tenancy.models import Project
from secrets_app import storage, validation
from secrets_app.models import Secret, SecretVersion, VersionStatus


def parse_id(raw: Any, resource: str) -> uuid.UUID:
    """``raw`` as the id of a ``resource``; a malformed id is a 400 in both APIs (hkms_core.errors.parse_uuid)."""
    return parse_uuid(raw, f"{resource}_id")


def secret_authorized(
    principal: Principal,
    secret_id: Any,
    action: Action,
    event: str,
    region: str | None,
    *,
    with_project: bool = True,
) -> Secret:
    """The secret if the principal may do ``action`` on it.

    A missing secret, one in another region and one the principal may not see all
    answer the same audited 404, naming the canonical (lower-case) id: nothing in
    the answer tells whether it exists (THREAT_MODEL.md, "No existence oracles").
    The secret comes with its key (``secret.key``) and, unless ``with_project`` is
    false, its project: a caller that never reads ``secret.project`` (the write of a
    version) saves the join and the ORM's query compilation
    (:func:`secrets_app.storage.secret_with_key`, one plain query)."""
    sid = parse_id(secret_id, "secret")
    secret: Secret | None
    if with_project:
        secret = Secret.objects.select_related("project", "key").filter(id=sid).first()
    else:
        secret = storage.secret_with_key(sid)
    if secret is None or (region is not None and secret.region != region):
        raise not_found_audited(principal, event, "secret", sid, secret, region=region)
    authorize_audited(principal, action, secret, event)
    return secret


def project_authorized(principal: Principal, project_id: Any, action: Action, event: str) -> Project:
    pid = parse_id(project_id, "project")
    project = Project.objects.filter(id=pid).first()
    if project is None:
        raise not_found_audited(principal, event, "project", pid)
    authorize_audited(principal, action, project, event)
    return project


def version_named(versions: QuerySet[SecretVersion], revision: Any) -> SecretVersion | None:
    """The version ``revision`` names among ``versions``: a number, ``latest`` (the highest
    revision) or ``latest_enabled``; None if there is none.  Anything else: ``InvalidArgument``."""
    raw = str(revision)
    if raw == "latest":
        return versions.order_by("-revision").first()
    if raw == "latest_enabled":
        return versions.filter(status=VersionStatus.ENABLED).order_by("-revision").first()
    number = validation.revision_number(raw)
    if number is None:
        raise InvalidArgument("revision", "must be a revision number, latest or latest_enabled")
    return versions.filter(revision=number).first()


def version_resolve(secret: Secret, revision: Any) -> SecretVersion:
    """A version of ``secret`` by number, ``latest`` or ``latest_enabled`` (:func:`version_named`); 404 if none."""
    version = version_named(SecretVersion.objects.filter(secret=secret), revision)
    if version is None:
        raise ObjectNotFound("secret_version", f"{secret.id}/{revision}")
    version.secret = secret
    return version


def secret_locked(secret: Secret) -> Secret:
    """``secret`` re-read with its row locked (inside ``transaction.atomic()``); 404 if it is gone."""
    locked = storage.secret_lock(secret.id)
    if locked is None:
        raise ObjectNotFound("secret", secret.id)
    return locked


def require_live(secret: Secret) -> None:
    if secret.deletion_requested_at is not None:
        raise PreconditionFailed("scheduled_for_deletion", f"secret {secret.id} is scheduled for deletion")
