"""Secret Manager services: every function takes the acting principal, checks it, audits.

These are the only entry points for the REST API, the console and commands;
``secrets_app.storage`` below them does no authorization.

* Objects the principal may not see answer :class:`ObjectNotFound` (404).
* Every payload read and every change appends an audit event inside the same
  transaction on the default database (fail closed: no event, no payload).
  Metadata reads are not audited and never touch the key databases.
* Deletion is scheduled for :data:`DELETION_DELAY` (metadata readable, payload
  not, restorable); ``secret_versions_expire`` destroys what is due, DEK first
  (crypto-shredding).  An ephemeral secret is destroyed at once.
* Ephemeral versions are enforced at access time (``now`` is injectable); the
  expire command applies their action for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError as DbIntegrityError
from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import (
    authorize_audited,
    grants_forget,
    not_found_audited,
    project_ids_with,
    visible,
)
from hkms_core.audit.services import audit_record, audit_record_committed
from hkms_core.errors import Conflict, InvalidArgument, ObjectNotFound, PreconditionFailed, parse_uuid
from hkms_core.queries import filter_json_list_contains
from hkms_core.tenancy.models import Project
from keys_app.models import Key, KeyState
from keys_app.services.projects import project_default_key
from secrets_app import states, storage, validation
from secrets_app.models import EphemeralAction, Secret, SecretType, SecretVersion, VersionStatus

DELETION_DELAY = timedelta(days=7)
ORDERINGS = {
    "name_asc": ("name", "id"),
    "name_desc": ("-name", "id"),
    "created_at_asc": ("created_at", "id"),
    "created_at_desc": ("-created_at", "id"),
    "updated_at_asc": ("updated_at", "id"),
    "updated_at_desc": ("-updated_at", "id"),
}
PRODUCTS = ("edge_services", "s2s_vpn")
DELETED = VersionStatus.DELETED
Expired = states.Expired  # re-exported: callers catch ``services.Expired``


@dataclass(frozen=True)
class EphemeralPolicy:
    time_to_live: timedelta | None = None
    expires_once_accessed: bool = False
    action: str = ""


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


# --- lookups ---------------------------------------------------------------------------------
def _uuid(raw: Any, resource: str) -> uuid.UUID:
    return parse_uuid(raw, f"{resource}_id")  # a malformed id is a 400 in both APIs (hkms_core.errors.parse_uuid)


def _secret(principal: Principal, secret_id: Any, action: Action, event: str, region: str | None) -> Secret:
    """The secret if the principal may do ``action`` on it.

    A missing secret, one in another region and one the principal may not see all
    answer the same audited 404, naming the canonical (lower-case) id: nothing in
    the answer tells whether it exists (THREAT_MODEL.md, "No existence oracles")."""
    sid = _uuid(secret_id, "secret")
    secret = Secret.objects.select_related("project", "key").filter(id=sid).first()
    if secret is None or (region is not None and secret.region != region):
        raise not_found_audited(principal, event, "secret", sid, secret, region=region)
    authorize_audited(principal, action, secret, event)
    return secret


def _project(principal: Principal, project_id: Any, action: Action, event: str) -> Project:
    pid = _uuid(project_id, "project")
    project = Project.objects.filter(id=pid).first()
    if project is None:
        raise not_found_audited(principal, event, "project", pid)
    authorize_audited(principal, action, project, event)
    return project


def version_resolve(secret: Secret, revision: Any) -> SecretVersion:
    """A version by number, ``latest`` (highest revision) or ``latest_enabled``."""
    versions = SecretVersion.objects.filter(secret=secret)
    raw = str(revision)
    if raw == "latest":
        version = versions.order_by("-revision").first()
    elif raw == "latest_enabled":
        version = versions.filter(status=VersionStatus.ENABLED).order_by("-revision").first()
    elif raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) < 2**31:
        version = versions.filter(revision=int(raw)).first()
    else:
        raise InvalidArgument("revision", "must be a revision number, latest or latest_enabled")
    if version is None:
        raise ObjectNotFound("secret_version", f"{secret.id}/{raw}")
    version.secret = secret
    return version


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


# --- destruction (THREAT_MODEL.md, "Destruction") ---------------------------------------------
def destruction_allowed(secret: Secret) -> bool:
    """Whether versions of ``secret`` may be destroyed for good now: never while it is protected.

    Every route to destruction asks this -- an expiry or an expires-once-accessed
    read whose action is ``delete``, the immediate deletion of an ephemeral
    secret's version, the end of a deletion window.  Where it answers no, the
    version is disabled (or stays scheduled for deletion, restorable) instead.
    Reads the row afresh, so a protection set since ``secret`` was loaded counts;
    the destruction itself re-checks :data:`DESTRUCTIBLE_VERSIONS` under the lock.
    """
    return Secret.objects.filter(id=secret.id, protected=False).exists()


#: The versions that may be destroyed: none of a protected secret.  Every destruction passes
#: it to ``storage.secret_version_destroy(only_if=…)``, which re-checks it under the secret's
#: row lock, so a protection that commits first always wins.
DESTRUCTIBLE_VERSIONS = Q(secret__protected=False)


def _require_destruction_right(principal: Principal, obj: Secret | Project, event: str, *actions: str) -> None:
    """Setting, changing or removing an ephemeral setting whose action destroys (``delete``)
    needs :attr:`Action.SECRET_ADMIN`, the permission to delete: a role that may not
    delete may not arrange a destruction either.  ``actions``: the ephemeral action
    before and after the change.  Raises ``PermissionDenied`` (audited)."""
    if EphemeralAction.DELETE in actions:
        authorize_audited(principal, Action.SECRET_ADMIN, obj, event)


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
    project = _project(principal, project_id, Action.SECRET_WRITE, "secret.create")
    fields = {
        "name": validation.secret_name(name),
        "path": validation.secret_path(path),
        "type": validation.secret_type(type),
        "tags": validation.tags(tags),
        "description": str(description or "")[:4096],
        "protected": bool(protected),
        **_policy_fields(ephemeral_policy),
    }
    _require_destruction_right(principal, project, "secret.create", fields["ephemeral_action"])
    key = _key_for(principal, project, key_id)
    try:
        with transaction.atomic():
            secret = Secret.objects.create(project=project, key=key, region=region, **fields)
            audit_record(principal, "secret.create", secret, name=secret.name, path=secret.path)
    except DbIntegrityError:
        raise Conflict(f"a secret named {fields['name']} already exists at {fields['path']}") from None
    return secret


def secret_get(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return _secret(principal, secret_id, Action.SECRET_VIEW, "secret.get", region)


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
    secret = _secret(principal, secret_id, Action.SECRET_WRITE, "secret.update", region)
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
        _require_destruction_right(principal, secret, "secret.update", before, policy["ephemeral_action"])
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
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, "secret.delete", region)
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(secret)
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
        _destroy_secret(secret, only_if=Q(deletion_requested_at__isnull=False))


def _locked(secret: Secret) -> Secret:
    """``secret`` re-read with its row locked (inside ``transaction.atomic()``); 404 if it is gone."""
    locked = storage.secret_lock(secret.id)
    if locked is None:
        raise ObjectNotFound("secret", secret.id)
    return locked


def _destroy_secret(secret: Secret, *, only_if: Q, audit: Callable[[Secret], Any] | None = None) -> bool:
    """Destroy every version (DEK first), then the secret row with the roles granted on it.

    ``only_if`` is re-checked on the secret row under its lock before anything
    is destroyed (a restore that committed first wins) and again before the row
    goes; each version is destroyed under its own lock (``storage.secret_version_destroy``).
    A crash in between leaves a secret still scheduled, past its window (not
    restorable), whose next expiry run finishes the job.  True if the secret went;
    ``audit(secret)`` is written in the transaction that deletes the row.
    """
    if not Secret.objects.filter(only_if, id=secret.id).exists():
        return False
    for version in SecretVersion.objects.filter(secret_id=secret.id).exclude(status=VersionStatus.DELETED):
        storage.secret_version_destroy(
            version, only_if=Q(secret__deletion_requested_at__isnull=False) & DESTRUCTIBLE_VERSIONS
        )
    with transaction.atomic():
        locked = storage.secret_lock(secret.id)
        if locked is None or not Secret.objects.filter(only_if, id=secret.id).exists():
            return False
        if audit is not None:
            audit(secret)
        grants_forget(secret)
        Secret.objects.filter(id=secret.id).delete()
    return True


def _window_passed(requested_at: datetime | None, now: datetime) -> bool:
    return requested_at is not None and requested_at + DELETION_DELAY <= now


def secret_restore(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    """Cancel a scheduled deletion (under the secret's row lock): the versions it scheduled come back.

    Versions deleted on their own before stay scheduled; a deletion whose
    window passed is final (the expiry may already be shredding it).
    """
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, "secret.restore", region)
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = _locked(secret)
            if locked.deletion_requested_at is None:
                raise PreconditionFailed("not_scheduled", f"secret {secret.id} is not scheduled for deletion")
            if _window_passed(locked.deletion_requested_at, now) and not locked.protected:  # protected: never final
                raise PreconditionFailed("deletion_final", f"secret {secret.id}: its deletion is final")
            scheduled = SecretVersion.objects.filter(
                secret_id=secret.id,
                status=VersionStatus.SCHEDULED_FOR_DELETION,
                deletion_requested_at=locked.deletion_requested_at,
            )
            for version in scheduled:
                _unschedule_version(version, now)
            Secret.objects.filter(id=secret.id).update(deletion_requested_at=None, updated_at=now)
            audit_record(principal, "secret.restore", secret)
    except DbIntegrityError:
        raise Conflict(f"another secret named {secret.name} now exists at {secret.path}") from None
    secret.refresh_from_db()
    return secret


def _unschedule_version(version: SecretVersion, now: datetime) -> bool:
    return storage.secret_version_transition(
        version,
        from_statuses=states.FROM["restore"],
        status=version.status_before_deletion or VersionStatus.DISABLED,
        status_before_deletion="",
        deletion_requested_at=None,
    )


def secret_set_protected(*, principal: Principal, secret_id: Any, protected: bool, region: str | None = None) -> Secret:
    event = "secret.protect" if protected else "secret.unprotect"
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, event, region)
    with transaction.atomic():
        _locked(secret)
        Secret.objects.filter(id=secret.id).update(protected=protected, updated_at=timezone.now())
        audit_record(principal, event, secret)
    secret.protected = protected
    return secret


def secret_add_owner(*, principal: Principal, secret_id: Any, product: Any, region: str | None = None) -> Secret:
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, "secret.add_owner", region)
    if product not in PRODUCTS:
        raise InvalidArgument("product", f"must be one of {', '.join(PRODUCTS)}")
    with transaction.atomic():
        secret.used_by = _locked(secret).used_by  # re-read under the lock: a concurrent owner is kept
        if product not in secret.used_by:
            secret.used_by = [*secret.used_by, product]
            secret.save(update_fields=["used_by", "updated_at"])
        audit_record(principal, "secret.add_owner", secret, product=product)
    return secret


@dataclass(frozen=True)
class SecretFilter:
    organization_id: Any = None
    project_id: Any = None
    tags: tuple[str, ...] = ()
    name: str | None = None
    path: str | None = None
    ephemeral: bool | None = None
    type: str | None = None
    scheduled_for_deletion: bool = False


def _filter_text(value: str, field: str) -> str:
    """A free-text filter value; NUL cannot be stored, and PostgreSQL refuses it in a query."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def secrets_visible(*, principal: Principal, region: str | None = None) -> QuerySet[Secret]:
    qs = visible(principal, Secret.objects.select_related("project"))
    return qs.filter(region=region) if region is not None else qs


def secret_list(
    *,
    principal: Principal,
    region: str | None = None,
    filters: SecretFilter = SecretFilter(),
    order_by: str = "created_at_asc",
) -> QuerySet[Secret]:
    if order_by not in ORDERINGS:
        raise InvalidArgument("order_by", f"must be one of {', '.join(ORDERINGS)}")
    qs = secrets_visible(principal=principal, region=region)
    if filters.organization_id:
        qs = qs.filter(project__organization_id=_uuid(filters.organization_id, "organization"))
    if filters.project_id:
        qs = qs.filter(project_id=_uuid(filters.project_id, "project"))
    qs = filter_json_list_contains(qs, "tags", [_filter_text(tag, "tags") for tag in filters.tags])
    if filters.name:
        qs = qs.filter(name=_filter_text(filters.name, "name"))
    if filters.path:
        qs = qs.filter(path=validation.secret_path(filters.path))
    if filters.ephemeral is not None:
        ephemeral = Q(ephemeral_ttl__isnull=False) | Q(ephemeral_expires_once_accessed=True)
        qs = qs.filter(ephemeral) if filters.ephemeral else qs.exclude(ephemeral)
    if filters.type:
        qs = qs.filter(type=validation.secret_type(filters.type))
    qs = qs.filter(deletion_requested_at__isnull=not filters.scheduled_for_deletion)
    return qs.order_by(*ORDERINGS[order_by])


@dataclass(frozen=True)
class BrowseItem:
    name: str
    created_at: datetime
    updated_at: datetime
    secret: Secret | None = None


def secret_browse(
    *,
    principal: Principal,
    region: str | None,
    project_id: Any,
    prefix: Any,
    order_by: str = "name_asc",
    tags: Iterable[str] = (),
    type: str | None = None,
) -> tuple[str, list[BrowseItem]]:
    """Folders directly under ``prefix`` and the secrets in it (like ``ls``)."""
    if order_by not in ORDERINGS:
        raise InvalidArgument("order_by", f"must be one of {', '.join(ORDERINGS)}")
    current = validation.secret_path(prefix, "prefix")
    qs = secret_list(
        principal=principal,
        region=region,
        filters=SecretFilter(project_id=project_id, tags=tuple(tags), type=type),
        order_by=order_by,
    )
    below = current.rstrip("/") + "/"
    folders: dict[str, BrowseItem] = {}
    items: list[BrowseItem] = []
    for secret in qs.filter(Q(path=current) | Q(path__startswith=below)):
        if secret.path == current:
            items.append(BrowseItem(secret.name, secret.created_at, secret.updated_at, secret))
            continue
        folder = secret.path[len(below) :].split("/", 1)[0]
        seen = folders.get(folder)
        if seen is None:
            folders[folder] = BrowseItem(folder, secret.created_at, secret.updated_at)
        else:
            folders[folder] = BrowseItem(
                folder, min(seen.created_at, secret.created_at), max(seen.updated_at, secret.updated_at)
            )
    reverse = order_by.endswith("_desc")
    field = order_by.rsplit("_", 1)[0]
    ordered_folders = sorted(folders.values(), key=lambda item: getattr(item, field), reverse=reverse)
    return current, [*ordered_folders, *items]


def secret_tags(*, principal: Principal, region: str | None, project_id: Any = None) -> list[str]:
    qs = secrets_visible(principal=principal, region=region).filter(deletion_requested_at__isnull=True)
    if project_id:
        qs = qs.filter(project_id=_uuid(project_id, "project"))
    found: set[str] = set()
    for row in qs.values_list("tags", flat=True):
        found.update(row or [])
    return sorted(found)


def secret_types(*, principal: Principal, region: str | None, project_id: Any = None) -> list[str]:
    """Secret types in use in the visible secrets (of the project)."""
    qs = secrets_visible(principal=principal, region=region).filter(deletion_requested_at__isnull=True)
    if project_id:
        qs = qs.filter(project_id=_uuid(project_id, "project"))
    used = set(qs.values_list("type", flat=True))
    return [t for t in SecretType.values if t in used]


# --- versions ------------------------------------------------------------------------------
def _require_live(secret: Secret) -> None:
    if secret.deletion_requested_at is not None:
        raise PreconditionFailed("scheduled_for_deletion", f"secret {secret.id} is scheduled for deletion")


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
    secret = _secret(principal, secret_id, Action.SECRET_WRITE, "secret.version.create", region)
    _require_live(secret)
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
    secret = _secret(principal, secret_id, Action.SECRET_VIEW, "secret.version.get", region)
    return version_resolve(secret, revision)


def secret_version_list(
    *, principal: Principal, secret_id: Any, region: str | None = None, statuses: Iterable[str] = ()
) -> QuerySet[SecretVersion]:
    secret = _secret(principal, secret_id, Action.SECRET_VIEW, "secret.version.list", region)
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
    secret = _secret(principal, secret_id, Action.SECRET_WRITE, "secret.version.update", region)
    version = version_resolve(secret, revision)
    if version.status == VersionStatus.DELETED:
        raise PreconditionFailed("deleted", "a deleted version cannot be changed")
    if expires_at is not None or expires_once_accessed is not None or ephemeral_action is not None:
        after = validation.ephemeral_action(ephemeral_action) if ephemeral_action is not None else None
        _require_destruction_right(
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
        _locked(secret)  # the locking rule: a destroy that committed first wins
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
    secret = _secret(principal, secret_id, Action.SECRET_WRITE, event, region)
    with transaction.atomic():
        locked = _locked(secret)
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
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, "secret.version.delete", region)
    now = timezone.now()
    with transaction.atomic():
        _locked(secret)
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
    secret = _secret(principal, secret_id, Action.SECRET_ADMIN, "secret.version.restore", region)
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(secret)
        _require_live(locked)
        version = version_resolve(secret, revision)
        if version.status != VersionStatus.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("not_scheduled", f"revision {version.revision} is not scheduled for deletion")
        if _window_passed(version.deletion_requested_at, now) and not locked.protected:  # protected: never final
            raise PreconditionFailed("deletion_final", f"revision {version.revision}: its deletion is final")
        if not _unschedule_version(version, now):
            raise PreconditionFailed("not_scheduled", f"revision {version.revision} is not scheduled for deletion")
        audit_record(principal, "secret.version.restore", secret, revision=version.revision)
    version.refresh_from_db()
    return version


def secret_version_access(
    *, principal: Principal, secret_id: Any, revision: Any, region: str | None = None, now: datetime | None = None
) -> AccessedPayload:
    """The hot path: the version, its secret and key in one query, then the same checks as
    :func:`_secret` and :func:`_access`; anything unusual goes the general way, which says what."""
    version = _version_with_secret(secret_id, revision)
    if version is None:  # unknown secret, no such version or a malformed revision
        secret = _secret(principal, secret_id, Action.SECRET_READ, "secret.version.access", region)
        return _access(principal, secret, revision, now or timezone.now())
    secret = version.secret
    if region is not None and secret.region != region:
        raise not_found_audited(principal, "secret.version.access", "secret", secret.id, secret, region=region)
    authorize_audited(principal, Action.SECRET_READ, secret, "secret.version.access")
    return _access(principal, secret, revision, now or timezone.now(), version=version)


def _version_with_secret(secret_id: Any, revision: Any) -> SecretVersion | None:
    """The version ``revision`` names with its secret and key (one query), or None."""
    versions = SecretVersion.objects.select_related("secret__key").filter(secret_id=_uuid(secret_id, "secret"))
    raw = str(revision)
    if raw == "latest_enabled":
        return versions.filter(status=VersionStatus.ENABLED).order_by("-revision").first()
    if raw == "latest":
        return versions.order_by("-revision").first()
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) < 2**31:
        return versions.filter(revision=int(raw)).first()
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
        .filter(project_id=_uuid(project_id, "project"), path=path, name=name, deletion_requested_at__isnull=True)
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


# --- expiry (the expire_secret_versions command) ---------------------------------------------
def secret_versions_expire(
    *, principal: Principal, now: datetime | None = None, dry_run: bool = False
) -> dict[str, int]:
    """Apply ephemeral actions for good and destroy what was scheduled more than 7 days ago.

    Operators only.  The candidates are listed without locks; each change then
    re-checks its own condition under the row locks (CAS), so what changed
    meanwhile (a restore, an enable, a new expiry date) is never undone: an
    expiry ``disable`` moves only an enabled version, a destruction happens only
    if the version (or secret) is still due when locked.  Each destruction
    deletes the DEK first (``storage.secret_version_destroy``), so a crash
    leaves at worst a version whose payload is already gone; a re-run finishes it.
    Counts are of what this run changed.
    """
    if not principal.is_superuser:
        raise ObjectNotFound("command", "expire_secret_versions")
    now = now or timezone.now()
    cutoff = now - DELETION_DELAY
    counts = {"versions_disabled": 0, "versions_destroyed": 0, "secrets_destroyed": 0}
    expired_q = Q(expires_at__lte=now) | Q(expires_once_accessed=True, accessed_at__isnull=False)
    expired = SecretVersion.objects.select_related("secret").filter(expired_q).exclude(status=VersionStatus.DELETED)
    # A protected secret's versions are never destroyed (``DESTRUCTIBLE_VERSIONS``, re-checked
    # under the locks): scheduled ones wait, restorable, until it is unprotected; expired
    # ones with action ``delete`` are disabled instead.
    due_q = Q(status=VersionStatus.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=cutoff) & DESTRUCTIBLE_VERSIONS
    due_versions = SecretVersion.objects.select_related("secret").filter(due_q)
    due_secrets = Secret.objects.filter(deletion_requested_at__lte=cutoff, protected=False)
    for version in expired:
        # Only an explicit ``delete`` action destroys; an expiry without one (set on a
        # single version) disables, which can be undone.
        if version.ephemeral_action != EphemeralAction.DELETE or not destruction_allowed(version.secret):
            if version.status != VersionStatus.ENABLED:
                continue
            if dry_run:
                counts["versions_disabled"] += 1
                continue
            with transaction.atomic():
                storage.secret_lock(version.secret_id)
                if SecretVersion.objects.filter(expired_q, id=version.id).exists() and (
                    storage.secret_version_transition(
                        version, from_statuses=states.FROM["expire_disable"], status=VersionStatus.DISABLED
                    )
                ):
                    counts["versions_disabled"] += 1
                    event = "secret.version.expire"
                    audit_record(principal, event, version.secret, revision=version.revision, ephemeral="disable")
        elif dry_run or _destroy_audited(
            principal, version, "ephemeral", only_if=expired_q & ~Q(status=DELETED) & DESTRUCTIBLE_VERSIONS
        ):
            counts["versions_destroyed"] += 1
    for version in due_versions:
        if dry_run or _destroy_audited(principal, version, "deletion_window_passed", only_if=due_q):
            counts["versions_destroyed"] += 1
    for secret in due_secrets:
        if dry_run:
            counts["secrets_destroyed"] += 1
            continue
        audit = lambda s: audit_record(principal, "secret.destroy", s)  # noqa: E731
        if _destroy_secret(secret, only_if=Q(deletion_requested_at__lte=cutoff, protected=False), audit=audit):
            counts["secrets_destroyed"] += 1
    return counts


def _destroy_audited(principal: Principal, version: SecretVersion, reason: str, *, only_if: Q) -> bool:
    """Destroy ``version`` if it still matches ``only_if`` under its lock; the event commits with the marking."""
    with transaction.atomic():
        destroyed = storage.secret_version_destroy(version, only_if=only_if)
        if destroyed:
            audit_record(principal, "secret.version.destroy", version.secret, revision=version.revision, reason=reason)
    return destroyed


def project_ids_readable(principal: Principal) -> set[str]:
    """Projects where the principal reads payloads project-wide (console helpers)."""
    return project_ids_with(principal, Action.SECRET_READ)


# --- named actions (one per API endpoint / console button) ------------------------------------
def secret_protect(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return secret_set_protected(principal=principal, secret_id=secret_id, protected=True, region=region)


def secret_unprotect(*, principal: Principal, secret_id: Any, region: str | None = None) -> Secret:
    return secret_set_protected(principal=principal, secret_id=secret_id, protected=False, region=region)


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
