"""Secret versions: create (encrypt under a fresh DEK), read metadata, edit, enable,
disable, delete (scheduled) and restore.

Status changes are compare-and-set ``UPDATE``s from the states :data:`secrets_app.states.FROM`
allows, under the secret's row lock (the locking rule of :mod:`secrets_app.states`):
of two concurrent changes exactly one succeeds, and a deletion request wins over a
concurrent enable.  Nothing here decrypts (payload reads: ``services.access``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PreconditionFailed
from secrets_app import states, storage, validation
from secrets_app.models import Secret, SecretVersion, VersionStatus
from secrets_app.services.deletion import (
    DESTRUCTIBLE_VERSIONS,
    deletion_window_passed,
    require_destruction_right,
    version_unschedule,
)
from secrets_app.services.lookups import require_live, secret_authorized, secret_locked, version_resolve


def secret_version_create(
    *,
    principal: Principal,
    secret_id: Any,
    data: bytes,
    region: str | None = None,
    description: str = "",
    disable_previous: bool = False,
    data_crc32: int | None = None,
    now: datetime | None = None,
) -> SecretVersion:
    """Encrypt ``data`` under a fresh DEK as the next revision (DEK committed first)."""
    secret = secret_authorized(principal, secret_id, Action.SECRET_WRITE, "secret.version.create", region)
    require_live(secret)
    validation.payload(data, type_=secret.type, crc32=data_crc32)
    now = now or timezone.now()
    fields: dict[str, Any] = {}
    if secret.is_ephemeral:
        fields = {
            "expires_at": now + secret.ephemeral_ttl if secret.ephemeral_ttl else None,
            "expires_once_accessed": secret.ephemeral_expires_once_accessed,
            "ephemeral_action": secret.ephemeral_action,
        }
    version = storage.secret_version_create(
        secret=secret,
        data=data,
        description=str(description or "")[:4096],
        disable_previous=disable_previous,
        data_crc32=validation.crc32_of(data),
        audit=lambda v: audit_record(
            principal, "secret.version.create", secret, revision=v.revision, disable_previous=disable_previous
        ),
        **fields,
    )
    return version


def secret_version_get(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None
) -> SecretVersion:
    secret = secret_authorized(principal, secret_id, Action.SECRET_VIEW, "secret.version.get", region)
    return version_resolve(secret, revision)


def secret_version_list(
    *, principal: Principal, secret_id: Any, region: str | None = None, statuses: Iterable[str] = ()
) -> QuerySet[SecretVersion]:
    secret = secret_authorized(principal, secret_id, Action.SECRET_VIEW, "secret.version.list", region)
    qs = SecretVersion.objects.filter(secret=secret).select_related("secret").order_by("revision")
    statuses = [s for s in statuses if s and s != "unknown_status"]
    for status in statuses:
        if status not in VersionStatus.values:
            raise InvalidArgument("status", f"must be one of {', '.join(VersionStatus.values)}")
    return qs.filter(status__in=statuses) if statuses else qs


def latest_revision(secret: Secret) -> int:
    return int(SecretVersion.objects.filter(secret=secret).aggregate(m=Max("revision"))["m"] or 0)


def secret_version_update(
    *,
    principal: Principal,
    secret_id: Any,
    revision: Any,
    region: str | None = None,
    description: Any = None,
    expires_at: datetime | None = None,
    expires_once_accessed: bool | None = None,
    ephemeral_action: Any = None,
) -> SecretVersion:
    secret = secret_authorized(principal, secret_id, Action.SECRET_WRITE, "secret.version.update", region)
    version = version_resolve(secret, revision)
    if version.status == VersionStatus.DELETED:
        raise PreconditionFailed("deleted", "a deleted version cannot be changed")
    if expires_at is not None or expires_once_accessed is not None or ephemeral_action is not None:
        after = validation.ephemeral_action(ephemeral_action) if ephemeral_action is not None else None
        require_destruction_right(
            principal, secret, "secret.version.update", version.ephemeral_action, after or version.ephemeral_action
        )
    changed: list[str] = []
    if description is not None:
        version.description = str(description)[:4096]
        changed.append("description")
    if expires_at is not None:
        version.expires_at = expires_at
        changed.append("expires_at")
    if expires_once_accessed is not None:
        version.expires_once_accessed = bool(expires_once_accessed)
        changed.append("expires_once_accessed")
    if ephemeral_action is not None:
        version.ephemeral_action = validation.ephemeral_action(ephemeral_action)
        changed.append("ephemeral_action")
    with transaction.atomic():
        secret_locked(secret)  # the locking rule: a destroy that committed first wins
        if not SecretVersion.objects.filter(id=version.id).exclude(status=VersionStatus.DELETED).exists():
            raise PreconditionFailed("deleted", "a deleted version cannot be changed")
        # Only the edited columns: a concurrent DEK rotation or status change is kept.
        version.save(update_fields=[*changed, "updated_at"])
        audit_record(principal, "secret.version.update", secret, revision=version.revision, fields=changed)
    return version


def secret_version_set_enabled(
    *, principal: Principal, secret_id: Any, revision: Any, enabled: bool, region: str | None = None
) -> SecretVersion:
    """enabled <-> disabled, only while the secret is not scheduled for deletion (both checked
    under the secret's row lock, the status by CAS): a deletion request wins over a concurrent enable."""
    event = "secret.version.enable" if enabled else "secret.version.disable"
    secret = secret_authorized(principal, secret_id, Action.SECRET_WRITE, event, region)
    with transaction.atomic():
        locked = secret_locked(secret)
        version = version_resolve(secret, revision)
        if locked.deletion_requested_at is not None:
            raise PreconditionFailed(
                VersionStatus.SCHEDULED_FOR_DELETION, f"secret {secret.id} is scheduled for deletion"
            )
        target = VersionStatus.ENABLED if enabled else VersionStatus.DISABLED
        if not storage.secret_version_transition(
            version, from_statuses=states.FROM["enable" if enabled else "disable"], status=target
        ):
            raise PreconditionFailed(version.status, f"revision {version.revision} is {version.status}")
        audit_record(principal, event, secret, revision=version.revision)
    return version


def secret_version_delete(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None
) -> SecretVersion:
    """Schedule one version for deletion (allowed on protected secrets).

    CAS from enabled/disabled under the secret's row lock: of two concurrent
    deletions exactly one succeeds, and a concurrent enable cannot undo it.
    """
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, "secret.version.delete", region)
    now = timezone.now()
    with transaction.atomic():
        secret_locked(secret)
        version = version_resolve(secret, revision)
        before = version.status
        if not storage.secret_version_transition(
            version,
            from_statuses=states.FROM["schedule_deletion"],
            status=VersionStatus.SCHEDULED_FOR_DELETION,
            status_before_deletion=before,
            deletion_requested_at=now,
        ):
            raise PreconditionFailed(before, f"revision {version.revision} is already {before}")
        audit_record(principal, "secret.version.delete", secret, revision=version.revision)
    if secret.is_ephemeral:  # protected: stays scheduled, restorable
        only_if = Q(status=VersionStatus.SCHEDULED_FOR_DELETION) & DESTRUCTIBLE_VERSIONS
        storage.secret_version_destroy(version, only_if=only_if)
    version.refresh_from_db()
    return version


def secret_version_restore(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None
) -> SecretVersion:
    """scheduled_for_deletion -> its status before (CAS, under the secret's row lock, secret live)."""
    secret = secret_authorized(principal, secret_id, Action.SECRET_ADMIN, "secret.version.restore", region)
    now = timezone.now()
    with transaction.atomic():
        locked = secret_locked(secret)
        require_live(locked)
        version = version_resolve(secret, revision)
        if version.status != VersionStatus.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("not_scheduled", f"revision {version.revision} is not scheduled for deletion")
        if (
            deletion_window_passed(version.deletion_requested_at, now) and not locked.protected
        ):  # protected: never final
            raise PreconditionFailed("deletion_final", f"revision {version.revision}: its deletion is final")
        if not version_unschedule(version, now):
            raise PreconditionFailed("not_scheduled", f"revision {version.revision} is not scheduled for deletion")
        audit_record(principal, "secret.version.restore", secret, revision=version.revision)
    version.refresh_from_db()
    return version


def secret_version_enable(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None
) -> SecretVersion:
    return secret_version_set_enabled(
        principal=principal, secret_id=secret_id, revision=revision, enabled=True, region=region
    )


def secret_version_disable(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None
) -> SecretVersion:
    return secret_version_set_enabled(
        principal=principal, secret_id=secret_id, revision=revision, enabled=False, region=region
    )
