"""Key metadata: create, get, list, update (Scaleway's CreateKey, GetKey, ListKeys, UpdateKey).

Creation commits KEK version 1 on kek before the ``Key`` row on default (with its audit
event): a crash in between leaves only an unreferenced KEK row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, not_found_audited, visible
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PreconditionFailed, parse_uuid
from hkms_core.lifecycle import ORDERINGS
from hkms_core.queries import filter_json_list_contains
from hkms_core.tenancy.models import Project
from keys_app import asymmetric
from keys_app.models import KekVersion, Key, KeyOrigin, KeyState
from keys_app.services.keys.permissions import current_time, failures_audited, key_for, key_lock, live_keys
from keys_app.services.keys.validation import (
    RotationPolicy,
    clean_description,
    clean_name,
    clean_policy,
    clean_tags,
    clean_text,
    clean_usage,
)
from keys_app.services.material import (
    key_create_with_material,
)


def _project_for(principal: Principal, project_id: Any) -> Any:
    if project_id in (None, ""):
        api_key = principal.api_key
        if api_key is None or api_key.default_project_id is None:
            raise InvalidArgument("project_id", "is required")
        project_id = api_key.default_project_id
    pid = parse_uuid(project_id, "project_id")
    project = Project.objects.filter(id=pid).first()
    if project is None:
        raise not_found_audited(principal, "key.create", "project", pid)
    return project


def key_create(
    *,
    principal: Principal,
    project_id: Any = None,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    usage: str | None = None,
    algorithm: str | None = None,
    unprotected: bool = False,
    rotation_policy: RotationPolicy | None = None,
    origin: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> Key:
    """Create a key; needs ``KEY_ADMIN`` on the project.

    Order: the key pair (if any) is generated first, outside any transaction;
    then KEK version 1 commits on kek, then the ``Key`` row and its audit event
    commit together on default.  A crash in between leaves only an
    unreferenced KEK row.  ``origin="external"`` keys start in
    ``pending_key_material`` with no version until :func:`key_import_key_material`.
    """
    project = _project_for(principal, project_id)
    authorize_audited(principal, Action.KEY_ADMIN, project, "key.create")
    now = current_time(now)
    entry = clean_usage(usage, algorithm)
    origin = origin if origin and origin != "unknown_origin" else KeyOrigin.SCALEWAY_KMS
    if origin not in KeyOrigin.values:
        raise InvalidArgument("origin", f"must be one of {', '.join(KeyOrigin.values)}")
    if origin == KeyOrigin.EXTERNAL and not entry.is_symmetric:
        raise InvalidArgument("origin", "only symmetric (aes_256_gcm) key material can be imported")
    period, next_at = clean_policy(rotation_policy, usage=entry.usage, origin=origin, now=now)
    fields: dict[str, Any] = {
        "description": clean_description(description),
        "tags": clean_tags(tags),
        "usage": entry.usage,
        "algorithm": entry.name,
        "state": KeyState.PENDING_KEY_MATERIAL if origin == KeyOrigin.EXTERNAL else KeyState.ENABLED,
        "protected": not unprotected,
        "origin": origin,
        "rotation_period": period,
        "next_rotation_at": next_at,
        "region": region or settings.HKMS_REGIONS[0],
    }
    name = clean_name(name)
    pair = asymmetric.generate(entry.name) if not entry.is_symmetric else None
    with failures_audited(principal, "key.create", project), transaction.atomic():
        key = key_create_with_material(project=project, name=name, material=pair.private if pair else None, **fields)
        if pair is not None:
            KekVersion.objects.using("kek").filter(key_id=key.id, version=1).update(public_key=pair.public_der)
        audit_record(principal, "key.create", key, usage=entry.usage, algorithm=entry.name, origin=origin)
    return key


def key_get(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    return key_for(principal, key_id, Action.KEY_VIEW, "key.get", region=region, now=now)


def key_list(
    *,
    principal: Principal,
    region: str | None = None,
    project_id: Any = None,
    organization_id: Any = None,
    name: str | None = None,
    tags: list[str] | None = None,
    usage: str | None = None,
    scheduled_for_deletion: bool = False,
    order_by: str | None = None,
    now: datetime | None = None,
) -> QuerySet[Key]:
    """The keys the principal may see, filtered and ordered (Scaleway's list_keys).

    ``scheduled_for_deletion`` selects the keys awaiting deletion instead of
    the others; ``name`` matches a part of the name (case-insensitive);
    ``tags`` keeps keys holding every tag given.  Visibility is two ``IN``
    clauses (see ``visible``); tags match exactly (``filter_json_list_contains``).
    """
    qs = visible(principal, live_keys(now))
    if region is not None:
        qs = qs.filter(region=region)
    if project_id not in (None, ""):
        qs = qs.filter(project_id=parse_uuid(project_id, "project_id"))
    if organization_id not in (None, ""):
        qs = qs.filter(project__organization_id=parse_uuid(organization_id, "organization_id"))
    if name:
        qs = qs.filter(name__icontains=clean_text(name, "name"))
    if usage and usage != "unknown_usage":
        if usage not in asymmetric.USAGES:
            raise InvalidArgument("usage", f"must be one of {', '.join(asymmetric.USAGES)}")
        qs = qs.filter(usage=usage)
    if scheduled_for_deletion:
        qs = qs.filter(state=KeyState.SCHEDULED_FOR_DELETION)
    else:
        qs = qs.exclude(state=KeyState.SCHEDULED_FOR_DELETION)
    qs = filter_json_list_contains(qs, "tags", [clean_text(tag, "tags") for tag in tags or []])
    ordering = ORDERINGS.get(order_by or "name_asc")
    if ordering is None:
        raise InvalidArgument("order_by", f"must be one of {', '.join(ORDERINGS)}")
    return qs.order_by(*ordering)


def key_update(
    *,
    principal: Principal,
    key_id: Any,
    region: str | None = None,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    rotation_policy: RotationPolicy | None = None,
    now: datetime | None = None,
) -> Key:
    """Change name, description, tags (None: unchanged) and the rotation policy.

    ``rotation_policy=RotationPolicy(None)`` removes the policy.
    """
    key = key_for(principal, key_id, Action.KEY_ADMIN, "key.update", region=region, now=now)
    now = current_time(now)
    with failures_audited(principal, "key.update", key), transaction.atomic():
        key = key_lock(key)
        if key.state == KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
        changed: list[str] = []
        if name is not None:
            key.name, changed = clean_name(name), [*changed, "name"]
        if description is not None:
            key.description, changed = clean_description(description), [*changed, "description"]
        if tags is not None:
            key.tags, changed = clean_tags(tags), [*changed, "tags"]
        if rotation_policy is not None:
            key.rotation_period, key.next_rotation_at = clean_policy(
                rotation_policy, usage=key.usage, origin=key.origin, now=now
            )
            changed += ["rotation_period", "next_rotation_at"]
        key.save(update_fields=[*changed, "updated_at"])
        audit_record(principal, "key.update", key, fields=[f for f in changed if f != "next_rotation_at"])
    return key


__all__ = [
    "key_create",
    "key_get",
    "key_list",
    "key_update",
]
