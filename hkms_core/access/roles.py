"""The role table: the one place that says what each role may do.

A role is a Django group (created by a data migration, visible in the admin)
holding permissions of the Project, Secret and Key content types.  Granting
role R on object O assigns, with django-guardian, R's permissions of O's
content type to the user on O.  A role on a project therefore applies to
everything in it: checks on a secret or key look at the object and at its
project.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a principal may try; each maps to one permission codename."""

    PROJECT_VIEW = "view_project"
    SECRET_VIEW = "view_secret_metadata"
    SECRET_READ = "read_secret_payload"
    SECRET_WRITE = "write_secret"
    SECRET_ADMIN = "admin_secret"
    KEY_VIEW = "view_key_metadata"
    KEY_USE = "use_key"
    KEY_ADMIN = "manage_key"
    AUDIT_READ = "view_audit_log"
    ROLES_MANAGE = "manage_roles"


A = Action
ROLES: dict[str, frozenset[Action]] = {
    "secret_reader": frozenset({A.PROJECT_VIEW, A.SECRET_VIEW, A.SECRET_READ}),
    "secret_writer": frozenset({A.PROJECT_VIEW, A.SECRET_VIEW, A.SECRET_WRITE}),
    "secret_admin": frozenset({A.PROJECT_VIEW, A.SECRET_VIEW, A.SECRET_WRITE, A.SECRET_ADMIN}),
    "key_user": frozenset({A.PROJECT_VIEW, A.KEY_VIEW, A.KEY_USE}),
    "key_admin": frozenset({A.PROJECT_VIEW, A.KEY_VIEW, A.KEY_ADMIN}),
    "auditor": frozenset({A.PROJECT_VIEW, A.SECRET_VIEW, A.KEY_VIEW, A.AUDIT_READ}),
    "project_admin": frozenset(Action),
}
ROLE_NAMES = tuple(ROLES)

#: Which permission codenames exist on each content type (``app_label.model``).
PERMISSIONS_BY_MODEL: dict[str, frozenset[Action]] = {
    "tenancy.project": frozenset(Action),
    "secrets_app.secret": frozenset({A.SECRET_VIEW, A.SECRET_READ, A.SECRET_WRITE, A.SECRET_ADMIN}),
    "keys_app.key": frozenset({A.KEY_VIEW, A.KEY_USE, A.KEY_ADMIN}),
}

#: Roles that may be granted on a single secret or key (the rest only on a project).
ROLES_FOR_MODEL: dict[str, tuple[str, ...]] = {
    "tenancy.project": ROLE_NAMES,
    "secrets_app.secret": ("secret_reader", "secret_writer", "secret_admin", "auditor"),
    "keys_app.key": ("key_user", "key_admin", "auditor"),
}

#: Who may grant a role: project admins anywhere in their project; secret admins
#: the secret roles (on secrets they administer); key admins the key roles -- and
#: only roles within their own rights, never to themselves
#: (``hkms_core.access.services._check_grantable``; THREAT_MODEL.md "Granting roles").
GRANTING_ACTION: dict[str, Action] = {
    "secret_reader": A.SECRET_ADMIN,
    "secret_writer": A.SECRET_ADMIN,
    "secret_admin": A.SECRET_ADMIN,
    "key_user": A.KEY_ADMIN,
    "key_admin": A.KEY_ADMIN,
    "auditor": A.ROLES_MANAGE,
    "project_admin": A.ROLES_MANAGE,
}

PERMISSION_LABELS: dict[Action, str] = {
    A.PROJECT_VIEW: "Can view project",
    A.SECRET_VIEW: "View secret metadata",
    A.SECRET_READ: "Read secret payloads",
    A.SECRET_WRITE: "Add versions and edit secret metadata",
    A.SECRET_ADMIN: "Delete, protect and manage permissions of secrets",
    A.KEY_VIEW: "View key metadata",
    A.KEY_USE: "Encrypt, decrypt and generate data keys",
    A.KEY_ADMIN: "Rotate, enable, disable, protect and delete keys",
    A.AUDIT_READ: "Read the audit log",
    A.ROLES_MANAGE: "Grant and revoke roles",
}
