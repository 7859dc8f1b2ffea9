"""Secrets: create, read, edit, delete (scheduled), restore, protect, owners.

Every function takes the acting principal, checks it (``lookups``) and audits the
change in the same transaction on the default database.  Changes follow the locking
rule of :mod:`secrets_app.states`: the secret's row is locked before its state is
checked, so a deletion request and a concurrent enable or restore never both win.
Deletion is scheduled for ``DELETION_DELAY`` (restorable); an ephemeral secret is
destroyed at once (``deletion.secret_destroy``, DEK first).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError as DbIntegrityError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, not_found_audited
from hkms_core.audit.services import audit_record
from hkms_core.errors import Conflict, InvalidArgument, ObjectNotFound, PreconditionFailed
from hkms_core.tenancy.models import Project
from keys_app.models import Key, KeyState
from keys_app.services.projects import project_default_key
from secrets_app import states, validation
from secrets_app.models import Secret, SecretVersion, VersionStatus
from secrets_app.services.deletion import (
    deletion_window_passed,
    require_destruction_right,
    secret_destroy,
    version_unschedule,
)
from secrets_app.services.lookups import project_authorized, secret_authorized, secret_locked

PRODUCTS = ("edge_services", "s2s_vpn")


@dataclass(frozen=True)
class EphemeralPolicy:
    time_to_live: timedelta | None = None
    expires_once_accessed: bool = False
    action: str = ""


def _key_for(principal: Principal, project: Project, key_id: Any) -> Key:
    """The secret's KEK: the project default, or a named key the principal may *use*.

    Naming a key makes every later read of the secret use it, so it takes the
    key-use role on that key (or its project), like encrypting with it would.  A key
    the principal may not see answers like one that does not exist, and its state is
    only told to those who may use it: ids and states of hidden keys cannot be probed.
    """
    if key_id in (None, ""):
        default_key = project_default_key(project)
        if default_key is None:
            raise PreconditionFailed("default_key", f"project {project.id} has no default key")
        return default_key
    try:
        kid = uuid.UUID(str(key_id))
    except ValueError:
        kid = None
    key = Key.objects.filter(id=kid, project=project).first() if kid is not None else None
    if key is not None:
        try:
            authorize_audited(principal, Action.KEY_USE, key, "secret.create")
        except ObjectNotFound:
            key = None
    elif kid is not None:  # audited like a hidden key: the same work either way
        not_found_audited(principal, "secret.create", "key", kid)
    if key is None:
        raise InvalidArgument("key_id", "must be a Key Manager key of the secret's project")
    if key.usage != "symmetric_encryption" or key.state != KeyState.ENABLED:
        raise InvalidArgument("key_id", "must be an enabled symmetric encryption key")
    return key


_POLICY_COLUMNS = ("ephemeral_ttl", "ephemeral_expires_once_accessed", "ephemeral_action")


def _policy_fields(policy: EphemeralPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {"ephemeral_ttl": None, "ephemeral_expires_once_accessed": False, "ephemeral_action": ""}
    if policy.time_to_live is None and not policy.expires_once_accessed:
        raise InvalidArgument("ephemeral_policy", "needs time_to_live or expires_once_accessed")
    action = validation.ephemeral_action(policy.action)
    if not action:
        raise InvalidArgument("ephemeral_policy.action", "must be delete or disable")
    return {
        "ephemeral_ttl": validation.ttl(policy.time_to_live) if policy.time_to_live is not None else None,
        "ephemeral_expires_once_accessed": policy.expires_once_accessed,
        "ephemeral_action": action,
    }


# --- secrets -------------------------------------------------------------------------------
def secret_create(
    *,
    principal: Principal,
    project_id: Any,
    name: Any,
    region: str = "fr-par",
    path: Any = "/",
    type: Any = None,
    tags: Any = None,
    description: str = "",
    protected: bool = False,
    ephemeral_policy: EphemeralPolicy | None = None,
    key_id: Any = None,
) -> Secret:
    project = project_authorized(principal, project_id, Action.SECRET_WRITE, "secret.create")
    fields = {
        "name": validation.secret_name(name),
        "path": validation.secret_path(path),
        "type": validation.secret_type(type),
        "tags": validation.tags(tags),
        "description": str(description or "")[:4096],
        "protected": bool(protected),
        **_policy_fields(ephemeral_policy),
    }
    require_destruction_right(principal, project, "secret.create", fields["ephemeral_action"])
    key = _key_for(principal, project, key_id)
    try:
        with transaction.atomic():
            secret = Secret.objects.create(project=project, key=key, region=region, **fields)
            audit_record(principal, "secret.create", secret, name=secret.name, path=secret.path)
    except DbIntegrityError:
        raise Conflict(f"a secret named {fields['name']} already exists at {fields['path']}") from None
    return secret


def secret_get(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return secret_authorized(principal, secret_id, Action.SECRET_VIEW, "secret.get", region)


def secret_update(
    *,
    principal: Principal,
    secret_id: Any,
    region: str | None = None,
    name: Any = None,
    tags: Any = None,
    description: Any = None,
    path: Any = None,
    ephemeral_policy: EphemeralPolicy | None = None,
) -> Secret:
    """Edit metadata; a new ``path`` moves the secret (names stay unique per path)."""
    secret = secret_authorized(principal, secret_id, Action.SECRET_WRITE, "secret.update", region)
    changed: list[str] = []
    if name is not None:
        secret.name = validation.secret_name(name)
        changed.append("name")
    if tags is not None:
        secret.tags = validation.tags(tags)
        changed.append("tags")
    if description is not None:
        secret.description = str(description)[:4096]
        changed.append("description")
    if path is not None:
        secret.path = validation.secret_path(path)
        changed.append("path")
    if ephemeral_policy is not None:
        policy = _policy_fields(ephemeral_policy)
        before = secret.ephemeral_action if secret.is_ephemeral else ""
        require_destruction_right(principal, secret, "secret.update", before, policy["ephemeral_action"])
        for field, value in policy.items():
            setattr(secret, field, value)
        changed.append("ephemeral_policy")
    # Only the edited columns: a version added meanwhile keeps its version_count.
    columns = [c for f in changed for c in (_POLICY_COLUMNS if f == "ephemeral_policy" else (f,))]
    try:
        with transaction.atomic():
            secret.save(update_fields=[*columns, "updated_at"])
            audit_record(principal, "secret.update", secret, fields=changed)
    except DbIntegrityError:
        raise Conflict(f"a secret named {secret.name} already exists at {secret.path}") from None
    return secret


def secret_delete(*, principal: Principal, secret_id: Any, region: str | None = None) -> None:
    """Schedule deletion (7 days) — or destroy at once for an ephemeral secret.

    Under the secret's row lock: refused if protected or already scheduled;
    every enabled or disabled version moves to ``scheduled_for_deletion`` (one
    CAS ``UPDATE`` from those states, remembering each one's status), then the
    secret, with the audit event: a concurrent enable either committed before
    (and is scheduled with the rest) or finds the secret scheduled and fails.
    """
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, "secret.delete", region)
    now = timezone.now()
    with transaction.atomic():
        locked = secret_locked(secret)
        if locked.protected:
            raise PreconditionFailed("protected", f"secret {secret.id} is protected: unprotect it first")
        if locked.deletion_requested_at is not None:
            raise PreconditionFailed("scheduled_for_deletion", f"secret {secret.id} is already scheduled for deletion")
        SecretVersion.objects.filter(secret_id=secret.id, status__in=states.FROM["schedule_deletion"]).update(
            status_before_deletion=F("status"),
            status=VersionStatus.SCHEDULED_FOR_DELETION,
            deletion_requested_at=now,
            updated_at=now,
        )
        Secret.objects.filter(id=secret.id).update(deletion_requested_at=now, updated_at=now)
        audit_record(principal, "secret.delete", secret, immediate=secret.is_ephemeral)
    secret.deletion_requested_at = now
    if secret.is_ephemeral:
        secret_destroy(secret, only_if=Q(deletion_requested_at__isnull=False))


def secret_restore(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    """Cancel a scheduled deletion (under the secret's row lock): the versions it scheduled come back.

    Versions deleted on their own before stay scheduled; a deletion whose
    window passed is final (the expiry may already be shredding it).
    """
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, "secret.restore", region)
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = secret_locked(secret)
            if locked.deletion_requested_at is None:
                raise PreconditionFailed("not_scheduled", f"secret {secret.id} is not scheduled for deletion")
            if (
                deletion_window_passed(locked.deletion_requested_at, now) and not locked.protected
            ):  # protected: never final
                raise PreconditionFailed("deletion_final", f"secret {secret.id}: its deletion is final")
            scheduled = SecretVersion.objects.filter(
                secret_id=secret.id,
                status=VersionStatus.SCHEDULED_FOR_DELETION,
                deletion_requested_at=locked.deletion_requested_at,
            )
            for version in scheduled:
                version_unschedule(version, now)
            Secret.objects.filter(id=secret.id).update(deletion_requested_at=None, updated_at=now)
            audit_record(principal, "secret.restore", secret)
    except DbIntegrityError:
        raise Conflict(f"another secret named {secret.name} now exists at {secret.path}") from None
    secret.refresh_from_db()
    return secret


def secret_set_protected(*, principal: Principal, secret_id: Any, protected: bool, region: str | None = None) -> Secret:
    event = "secret.protect" if protected else "secret.unprotect"
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, event, region)
    with transaction.atomic():
        secret_locked(secret)
        Secret.objects.filter(id=secret.id).update(protected=protected, updated_at=timezone.now())
        audit_record(principal, event, secret)
    secret.protected = protected
    return secret


def secret_add_owner(*, principal: Principal, secret_id: Any, product: Any, region: str | None = None) -> Secret:
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, "secret.add_owner", region)
    if product not in PRODUCTS:
        raise InvalidArgument("product", f"must be one of {', '.join(PRODUCTS)}")
    with transaction.atomic():
        secret.used_by = secret_locked(secret).used_by  # re-read under the lock: a concurrent owner is kept
        if product not in secret.used_by:
            secret.used_by = [*secret.used_by, product]
            secret.save(update_fields=["used_by", "updated_at"])
        audit_record(principal, "secret.add_owner", secret, product=product)
    return secret


# --- named actions (one per API endpoint / console button) ------------------------------------
def secret_protect(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return secret_set_protected(principal=principal, secret_id=secret_id, protected=True, region=region)


def secret_unprotect(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return secret_set_protected(principal=principal, secret_id=secret_id, protected=False, region=region)
