"""Authorization: "may this principal do X on Y" and "which Ys may it see".

Rules (docs/architecture.md, "Access control"):

* superusers and command-line operators may do everything;
* otherwise an action on a secret or key is allowed when the principal holds
  the action's permission on that object *or on its project*;
* an object the principal may not even see raises :class:`ObjectNotFound`
  (404), never a 403, so ids cannot be probed; an object it sees but may not
  act on raises :class:`PermissionDenied`.

Cost: the principal's grants are loaded with one query and cached on the
principal; list filters are two ``IN`` clauses, never a query per object.
Every denial is audited by the caller through :func:`authorize`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q, QuerySet
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from hkms_core.access.generation import access_generation_bump
from hkms_core.access.models import RoleGrant
from hkms_core.access.principal import Grants, Principal
from hkms_core.access.roles import GRANTING_ACTION, PERMISSIONS_BY_MODEL, ROLES, ROLES_FOR_MODEL, Action
from hkms_core.audit.services import audit_denied, audit_record
from hkms_core.errors import InvalidArgument, ObjectNotFound, PermissionDenied

_VIEW_ACTION = {
    "tenancy.project": Action.PROJECT_VIEW,
    "secrets_app.secret": Action.SECRET_VIEW,
    "keys_app.key": Action.KEY_VIEW,
}
_RESOURCE = {"tenancy.project": "project", "secrets_app.secret": "secret", "keys_app.key": "key"}


def _label(obj_or_model: Any) -> str:
    return str(obj_or_model._meta.label_lower)


def _project_id(obj: Any) -> uuid.UUID:
    return uuid.UUID(str(obj.id if _label(obj) == "tenancy.project" else obj.project_id))


def user_grants(user: Any | None) -> Grants:
    """``{(content_type_id, object_pk): codenames}`` of a user's object permissions (one query)."""
    grants: dict[tuple[int, str], set[str]] = {}
    if user is not None and user.is_active:
        rows = UserObjectPermission.objects.filter(user_id=user.pk).values_list(
            "content_type_id", "object_pk", "permission__codename"
        )
        for ct_id, pk, codename in rows:
            grants.setdefault((ct_id, str(pk)), set()).add(codename)
    return {k: frozenset(v) for k, v in grants.items()}


def principal_grants(principal: Principal) -> Grants:
    """The principal's grants: loaded once per principal (API requests bring them from
    ``hkms_core.access.cache``, already checked against the access generation)."""
    if principal._grants is None:
        principal._grants = user_grants(principal.user)
    return principal._grants


def forget_grants(principal: Principal) -> None:
    principal._grants = None


def _ct_id(label: str) -> int:
    app_label, model = label.split(".")
    return ContentType.objects.get_by_natural_key(app_label, model).id  # cached by Django


def can(principal: Principal, action: Action, obj: Any) -> bool:
    if principal.is_superuser:
        return True
    grants = principal_grants(principal)
    label = _label(obj)
    if action in grants.get((_ct_id(label), str(obj.pk)), frozenset()):
        return True
    if label == "tenancy.project":
        return False
    return action in grants.get((_ct_id("tenancy.project"), str(_project_id(obj))), frozenset())


def can_see(principal: Principal, obj: Any) -> bool:
    return can(principal, _VIEW_ACTION[_label(obj)], obj)


def authorize(principal: Principal, action: Action, obj: Any, *, as_id: object = None) -> None:
    """Raise ``ObjectNotFound`` if the principal cannot see ``obj``, ``PermissionDenied`` if it
    sees it but may not perform ``action``.  Callers audit the outcome.

    ``as_id``: how the caller named the object (default: its canonical id).  The 404
    must read exactly like the one for an object that does not exist, so a caller
    that looked the object up by another name (a path) passes the name it was asked
    for (THREAT_MODEL.md, "No existence oracles")."""
    if can(principal, action, obj):
        return
    label = _label(obj)
    if not can_see(principal, obj):
        raise ObjectNotFound(_RESOURCE[label], obj.pk if as_id is None else as_id)
    raise PermissionDenied(str(action), _RESOURCE[label], obj.pk)


def authorize_audited(
    principal: Principal, action: Action, obj: Any, event: str, *, as_id: object = None, **detail: Any
) -> None:
    """:func:`authorize`, recording a refusal as a ``denied`` audit event before re-raising.

    Services call this first; the ``allowed`` event is theirs to record inside
    the transaction of the change (or before returning a payload).
    """
    try:
        authorize(principal, action, obj, as_id=as_id)
    except (ObjectNotFound, PermissionDenied) as exc:
        audit_denied(principal, event, obj, exc, **detail)
        raise


def not_found_audited(
    principal: Principal, event: str, resource: str, requested: object, obj: Any = None, **detail: Any
) -> ObjectNotFound:
    """The 404 for a lookup that found nothing the caller may use, audited; the caller raises it.

    ``requested``: the canonical name the caller asked for (a UUID's lower-case
    form, a ``/path/name``), never a resolved id, so the answer reads the same
    whether or not the object exists.  ``obj``: the real object when there is one
    (e.g. the same secret in another region), recorded in the event so that its
    project's auditors see the attempt; else the event names what was asked for.
    Both cases write one ``denied`` event, so the work done does not tell them apart.
    """
    error = ObjectNotFound(resource, requested)
    target = obj if obj is not None else (resource, str(requested)[:64], "")
    audit_denied(principal, event, target, error, requested=str(requested), **detail)
    return error


def project_ids_with(principal: Principal, action: Action) -> set[str]:
    """Projects on which the principal holds ``action`` project-wide."""
    ct = _ct_id("tenancy.project")
    return {pk for (ct_id, pk), codes in principal_grants(principal).items() if ct_id == ct and action in codes}


def visible(principal: Principal, queryset: QuerySet[Any], action: Action | None = None) -> QuerySet[Any]:
    """Filter ``queryset`` (projects, secrets or keys) to what the principal may see (or do ``action`` on)."""
    if principal.is_superuser:
        return queryset
    label = _label(queryset.model)
    action = action or _VIEW_ACTION[label]
    project_ids = project_ids_with(principal, action)
    if label == "tenancy.project":
        return queryset.filter(pk__in=[uuid.UUID(p) for p in project_ids])
    ct = _ct_id(label)
    own = [
        uuid.UUID(pk) for (ct_id, pk), codes in principal_grants(principal).items() if ct_id == ct and action in codes
    ]
    return queryset.filter(Q(project_id__in=[uuid.UUID(p) for p in project_ids]) | Q(pk__in=own))


# --- role grants ----------------------------------------------------------------------------
def role_group(role: str) -> Group:
    if role not in ROLES:
        raise InvalidArgument("role", f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    return Group.objects.get(name=role)


def _sync_object_permissions(user: Any, obj: Any) -> None:
    """Make the user's guardian permissions on ``obj`` equal to the union of its role grants."""
    label = _label(obj)
    ct = ContentType.objects.get_for_model(obj)
    roles = RoleGrant.objects.filter(user=user, content_type=ct, object_pk=str(obj.pk)).values_list("role", flat=True)
    wanted = {str(a) for role in roles for a in ROLES[role] if a in PERMISSIONS_BY_MODEL[label]}
    current = set(
        UserObjectPermission.objects.filter(user=user, content_type=ct, object_pk=str(obj.pk)).values_list(
            "permission__codename", flat=True
        )
    )
    for codename in current - wanted:
        remove_perm(codename, user, obj)
    for codename in wanted - current:
        assign_perm(Permission.objects.get(content_type=ct, codename=codename), user, obj)


def _check_grantable(principal: Principal, user: Any, role: str, obj: Any, event: str) -> None:
    """The grant rules (THREAT_MODEL.md, "Granting roles"); the same for granting and revoking.

    1. the principal sees ``obj`` (else 404) and holds ``GRANTING_ACTION[role]`` on it;
    2. a grant never exceeds the granter's own rights: the principal holds every
       permission the role gives on ``obj`` (so a ``secret_admin``, who does not read
       payloads, cannot hand out ``secret_reader``; a ``key_admin`` cannot hand out
       ``key_user``);
    3. nobody grants or revokes a role on themselves, superusers included; only an
       operator on the command line (``Principal.for_command()``) is exempt.

    Raises ``ObjectNotFound``, ``PermissionDenied`` or ``InvalidArgument``.
    """
    label = _label(obj)
    if role not in ROLES:
        raise InvalidArgument("role", f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    if role not in ROLES_FOR_MODEL[label]:
        raise InvalidArgument("role", f"role {role} can only be granted on a project")
    authorize(principal, GRANTING_ACTION[role], obj)
    if principal.system:
        return
    if principal.user is not None and user is not None and user.pk == principal.user.pk:
        raise PermissionDenied(f"{event}.self", _RESOURCE[label], obj.pk)
    for action in ROLES[role] & PERMISSIONS_BY_MODEL[label]:
        if not can(principal, action, obj):
            raise PermissionDenied(f"{event}.exceeds_own_rights", _RESOURCE[label], obj.pk)


def role_grant(*, principal: Principal, user: Any, role: str, obj: Any) -> RoleGrant:
    """Grant ``role`` on a project, secret or key to ``user`` (idempotent), audited.

    Refused (and audited as ``denied``) unless :func:`_check_grantable` allows it.
    """
    try:
        _check_grantable(principal, user, role, obj, "role.grant")
    except (ObjectNotFound, PermissionDenied, InvalidArgument) as exc:
        audit_denied(principal, "role.grant", obj, exc, role=str(role)[:100], grantee=user.get_username())
        raise
    with transaction.atomic():
        grant, _ = RoleGrant.objects.get_or_create(
            user=user,
            role=role,
            content_type=ContentType.objects.get_for_model(obj),
            object_pk=str(obj.pk),
            defaults={"project_id": _project_id(obj), "granted_by": principal.username},
        )
        _sync_object_permissions(user, obj)
        access_generation_bump()
        audit_record(principal, "role.grant", obj, role=role, grantee=user.get_username())
    return grant


def role_revoke(*, principal: Principal, user: Any, role: str, obj: Any) -> bool:
    """Revoke ``role`` on ``obj`` from ``user``; returns whether it was held.

    The same rules as granting (:func:`_check_grantable`): only who could grant
    the role may take it away, and never from themselves."""
    try:
        _check_grantable(principal, user, role, obj, "role.revoke")
    except (ObjectNotFound, PermissionDenied, InvalidArgument) as exc:
        audit_denied(principal, "role.revoke", obj, exc, role=str(role)[:100], grantee=user.get_username())
        raise
    with transaction.atomic():
        deleted, _ = RoleGrant.objects.filter(
            user=user, role=role, content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk)
        ).delete()
        _sync_object_permissions(user, obj)
        access_generation_bump()
        audit_record(principal, "role.revoke", obj, role=role, grantee=user.get_username(), held=bool(deleted))
    return bool(deleted)


def grants_forget(obj: Any) -> int:
    """Delete every role grant and object permission held on ``obj``, which is being
    destroyed for good; returns how many grants there were.

    Called inside the transaction that deletes the object's row, so that an id
    reused later (or a restored backup row) never inherits old grants.
    """
    content_type = ContentType.objects.get_for_model(obj)
    deleted, _ = RoleGrant.objects.filter(content_type=content_type, object_pk=str(obj.pk)).delete()
    UserObjectPermission.objects.filter(content_type=content_type, object_pk=str(obj.pk)).delete()
    access_generation_bump()
    return deleted


def role_grants_on(obj: Any) -> QuerySet[RoleGrant]:
    return RoleGrant.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk)
    ).select_related("user")


def user_by_name(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise InvalidArgument("user", f"user {username!r} does not exist")
    return user
