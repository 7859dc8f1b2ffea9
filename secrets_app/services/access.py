"""Payload reads: the only services that decrypt.

Fail closed: the read is audited before the payload is returned, and if the event
cannot be written the payload is not returned.  Ephemeral versions are enforced at
read time (``states.version_readable``, ``now`` injectable); an expires-once-accessed
version is marked accessed by a CAS ``UPDATE``, so of two concurrent reads exactly one
gets the payload.  The payload never shows in a repr or a log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, not_found_audited
from hkms_core.audit.services import audit_record, audit_record_committed
from hkms_core.errors import InvalidArgument
from secrets_app import states, storage, validation
from secrets_app.models import EphemeralAction, Secret, SecretVersion, VersionStatus
from secrets_app.services.deletion import DESTRUCTIBLE_VERSIONS
from secrets_app.services.lookups import parse_id, secret_authorized, version_named, version_resolve
from secrets_app.states import Expired


@dataclass(frozen=True)
class AccessedPayload:
    """A decrypted payload and what the caller may show with it; never logged."""

    secret_id: uuid.UUID
    revision: int
    data: bytes
    type: str
    data_crc32: int | None

    def __repr__(self) -> str:
        return f"<AccessedPayload secret={self.secret_id} rev={self.revision} len={len(self.data)}>"


def secret_version_access(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None, now: datetime | None = None
) -> AccessedPayload:
    """The hot path: the version, its secret and key in one query, then the same checks as
    :func:`~secrets_app.services.lookups.secret_authorized`
    and :func:`_access`; anything unusual goes the general way, which says what."""
    version = _version_with_secret(secret_id, revision)
    if version is None:  # unknown secret, no such version or a malformed revision
        secret = secret_authorized(principal, secret_id, Action.SECRET_READ, "secret.version.access", region)
        return _access(principal, secret, revision, now or timezone.now())
    secret = version.secret
    if region is not None and secret.region != region:
        raise not_found_audited(principal, "secret.version.access", "secret", secret.id, secret, region=region)
    authorize_audited(principal, Action.SECRET_READ, secret, "secret.version.access")
    return _access(principal, secret, revision, now or timezone.now(), version=version)


def _version_with_secret(secret_id: Any, revision: Any) -> SecretVersion | None:
    """The version ``revision`` names with its secret and key (one query), or None."""
    versions = SecretVersion.objects.select_related("secret__key").filter(secret_id=parse_id(secret_id, "secret"))
    try:
        return version_named(versions, revision)
    except InvalidArgument:  # the general way says so
        return None


def secret_version_access_by_path(
    *,
    principal: Principal,
    project_id: Any,
    secret_path: Any,
    secret_name: Any,
    revision: Any,
    region: str | None = None,
    now: datetime | None = None,
) -> AccessedPayload:
    path = validation.secret_path(secret_path, "secret_path")
    name = validation.secret_name(secret_name)
    # One live secret per project, path and name whatever its region (a unique constraint).
    secret = (
        Secret.objects.select_related("project", "key")
        .filter(project_id=parse_id(project_id, "project"), path=path, name=name, deletion_requested_at__isnull=True)
        .first()
    )
    # Missing, in another region or hidden: the same 404 naming the path asked for, never an id.
    requested = f"{path.rstrip('/')}/{name}"
    if secret is None or (region is not None and secret.region != region):
        raise not_found_audited(principal, "secret.version.access", "secret", requested, secret, region=region)
    authorize_audited(principal, Action.SECRET_READ, secret, "secret.version.access", as_id=requested)
    return _access(principal, secret, revision, now or timezone.now())


def _access(
    principal: Principal, secret: Secret, revision: Any, now: datetime, version: SecretVersion | None = None
) -> AccessedPayload:
    """Decrypt, then record the read (and an expires-once-accessed transition) before returning.

    The event is committed before the payload is returned, and if it cannot be
    written the payload is not returned: in the transaction that marks an
    expires-once-accessed version accessed, else group-committed with the
    concurrent reads of this process (``audit_record_committed``).
    ``version``: already resolved.
    """
    version = version if version is not None else version_resolve(secret, revision)
    states.version_readable(secret, version, now)
    data = storage.secret_version_payload(version)
    once = version.expires_once_accessed
    if once:
        with transaction.atomic():
            updated = SecretVersion.objects.filter(
                id=version.id, accessed_at__isnull=True, status__in=states.FROM["access_once"]
            ).update(accessed_at=now, status=VersionStatus.DISABLED, updated_at=now)
            if not updated:  # someone else read it first
                raise Expired("secret_version", f"{secret.id}/{version.revision}")
            audit_record(principal, "secret.version.access", secret, revision=version.revision)
    else:
        audit_record_committed(principal, "secret.version.access", secret, revision=version.revision)
    if once and version.ephemeral_action == EphemeralAction.DELETE:  # protected: it stays disabled
        storage.secret_version_destroy(version, only_if=Q(accessed_at__isnull=False) & DESTRUCTIBLE_VERSIONS)
    return AccessedPayload(secret.id, version.revision, data, secret.type, version.data_crc32)
