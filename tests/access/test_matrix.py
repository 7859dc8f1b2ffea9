"""The authorization matrix: every guarded service action x every role x where it is granted.

Generated from one table (``ROWS``).  ``test_every_guarded_service_has_a_row`` finds
every public function of the service modules that takes a ``principal`` and fails
when one has neither a row nor a documented exemption, so a new action cannot be
added without deciding who may use it.

Scopes, for a target secret or key in project A:
* ``project``       the role granted on project A             -> allowed iff the role has the action
* ``object``        the role granted on the target itself     -> allowed iff the role has the action
* ``sibling``       the role granted on another object in A   -> denied
* ``other_project`` the role granted on project B             -> denied, and always as 404
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from hkms_core.access.principal import Principal
from hkms_core.access.roles import ROLES, ROLES_FOR_MODEL, Action
from hkms_core.access.services import role_grant
from hkms_core.errors import ObjectNotFound, PermissionDenied
from secrets_app.services.secrets import EphemeralPolicy

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

SECRET_SERVICE_MODULES = (
    "secrets_app.services.secrets",
    "secrets_app.services.versions",
    "secrets_app.services.access",
    "secrets_app.services.expiry",
    "secrets_app.selectors",
)
KEY_SERVICE_MODULES = tuple(
    f"keys_app.services.keys.{name}" for name in ("metadata", "lifecycle", "use", "key_material", "scheduling")
)
SERVICE_MODULES = (*SECRET_SERVICE_MODULES, *KEY_SERVICE_MODULES)
SYSTEM = Principal.for_command()

#: Public functions with a ``principal`` that are not actions of their own.
EXEMPT = {
    "secrets_visible": "the selector under secret_list (covered by its row)",
    "secret_set_protected": "shared body of secret_protect / secret_unprotect (covered by their rows)",
    "secret_version_set_enabled": "shared body of secret_version_enable / _disable (covered by their rows)",
    "project_ids_readable": "console helper over project_ids_with, no object",
    "projects_visible": "console selector over access.visible, no object",
    "secrets_overview": "dashboard counts over access.visible, no object",
    "secret_counts_by_project": "projects page counts over secrets_visible, no object",
    "secret_versions_expire": "operator-only command (test_operator_only_services_refuse_users)",
    "keys_rotate_due": "operator-only command (test_operator_only_services_refuse_users)",
    "keys_purge_deleted": "operator-only command (test_operator_only_services_refuse_users)",
    "key_rewrap_deks": "takes a Key, not an id (test_rewrap_from_the_console_runs_the_resumable_job)",
}


@dataclass
class World:
    project: Any
    other_project: Any
    secret: Any
    sibling_secret: Any
    key: Any
    sibling_key: Any
    signing_key: Any
    kem_key: Any
    external_key: Any
    ciphertext: bytes
    wrapped: bytes
    signature: bytes
    digest: bytes


@dataclass(frozen=True)
class Row:
    action: Action
    target: str  # "secret" | "key" | "signing_key"
    call: Callable[[Principal, World], Any]
    listing: Callable[[Principal, World], bool] | None = None  # for selectors: "is the target listed?"


def _secret_service(name: str) -> Any:
    """The secret service ``name``, from whichever module of SECRET_SERVICE_MODULES owns it."""
    for module_name in SECRET_SERVICE_MODULES:
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)


def _s(name: str, **kw: Any) -> Callable[[Principal, World], Any]:
    def call(p: Principal, w: World) -> Any:
        return _secret_service(name)(principal=p, secret_id=w.secret.id, **kw)

    return call


def _k(name: str, target: str = "key", **kw: Any) -> Callable[[Principal, World], Any]:
    def call(p: Principal, w: World) -> Any:
        module = next(m for m in map(importlib.import_module, KEY_SERVICE_MODULES) if hasattr(m, name))
        args = {k: (v(w) if callable(v) else v) for k, v in kw.items()}
        return getattr(module, name)(principal=p, key_id=getattr(w, target).id, **args)

    return call


def _secret_create(p: Principal, w: World) -> Any:
    from secrets_app.services.secrets import secret_create

    return secret_create(principal=p, project_id=w.project.id, name="created-in-matrix")


def _key_create(p: Principal, w: World) -> Any:
    from keys_app.services.keys.metadata import key_create

    return key_create(principal=p, project_id=w.project.id, name="created-in-matrix")


def _by_path(p: Principal, w: World) -> Any:
    from secrets_app.services.access import secret_version_access_by_path

    return secret_version_access_by_path(
        principal=p, project_id=w.project.id, secret_path="/", secret_name=w.secret.name, revision="latest"
    )


def _listed_secret(p: Principal, w: World) -> bool:
    from secrets_app.selectors import secret_list

    return w.secret in list(secret_list(principal=p))


def _listed_key(p: Principal, w: World) -> bool:
    from keys_app.services.keys.metadata import key_list

    return w.key.id in {k.id for k in key_list(principal=p)}


def _browse(p: Principal, w: World) -> bool:
    from secrets_app.selectors import secret_browse

    return any(i.secret == w.secret for i in secret_browse(principal=p, region=None, project_id=None, prefix="/")[1])


def _tags(p: Principal, w: World) -> bool:
    from secrets_app.selectors import secret_tags

    return "matrix-tag" in secret_tags(principal=p, region=None)


def _types(p: Principal, w: World) -> bool:
    from secrets_app.selectors import secret_types

    return "opaque" in secret_types(principal=p, region=None)


def _import(p: Principal, w: World) -> Any:
    from keys_app.services.keys.key_material import key_import_key_material
    from keys_app.services.keys.metadata import key_create

    pending = key_create(principal=SYSTEM, project_id=w.project.id, name="external", origin="external")
    return key_import_key_material(principal=p, key_id=pending.id, key_material=bytes(32))


A = Action
ROWS: dict[str, Row] = {
    # secrets
    "secret_create": Row(A.SECRET_WRITE, "project", _secret_create),
    "secret_get": Row(A.SECRET_VIEW, "secret", _s("secret_get")),
    "secret_update": Row(A.SECRET_WRITE, "secret", _s("secret_update", description="changed")),
    "secret_delete": Row(A.SECRET_ADMIN, "secret", _s("secret_delete")),
    "secret_restore": Row(A.SECRET_ADMIN, "secret", _s("secret_restore")),
    "secret_protect": Row(A.SECRET_ADMIN, "secret", _s("secret_protect")),
    "secret_unprotect": Row(A.SECRET_ADMIN, "secret", _s("secret_unprotect")),
    "secret_add_owner": Row(A.SECRET_ADMIN, "secret", _s("secret_add_owner", product="edge_services")),
    "secret_list": Row(A.SECRET_VIEW, "secret", _s("secret_get"), listing=_listed_secret),
    "secret_browse": Row(A.SECRET_VIEW, "secret", _s("secret_get"), listing=_browse),
    "secret_tags": Row(A.SECRET_VIEW, "secret", _s("secret_get"), listing=_tags),
    "secret_types": Row(A.SECRET_VIEW, "secret", _s("secret_get"), listing=_types),
    "secret_version_create": Row(A.SECRET_WRITE, "secret", _s("secret_version_create", data=b"matrix")),
    "secret_version_get": Row(A.SECRET_VIEW, "secret", _s("secret_version_get", revision="1")),
    "secret_version_list": Row(A.SECRET_VIEW, "secret", _s("secret_version_list")),
    "secret_version_update": Row(A.SECRET_WRITE, "secret", _s("secret_version_update", revision="1", description="x")),
    "secret_version_enable": Row(A.SECRET_WRITE, "secret", _s("secret_version_enable", revision="1")),
    "secret_version_disable": Row(A.SECRET_WRITE, "secret", _s("secret_version_disable", revision="1")),
    "secret_version_delete": Row(A.SECRET_ADMIN, "secret", _s("secret_version_delete", revision="1")),
    "secret_version_restore": Row(A.SECRET_ADMIN, "secret", _s("secret_version_restore", revision="1")),
    "secret_version_access": Row(A.SECRET_READ, "secret", _s("secret_version_access", revision="latest")),
    "secret_version_access_by_path": Row(A.SECRET_READ, "secret", _by_path),
    # keys
    "key_create": Row(A.KEY_ADMIN, "project", _key_create),
    "key_get": Row(A.KEY_VIEW, "key", _k("key_get")),
    "key_list": Row(A.KEY_VIEW, "key", _k("key_get"), listing=_listed_key),
    "key_update": Row(A.KEY_ADMIN, "key", _k("key_update", description="changed")),
    "key_delete": Row(A.KEY_ADMIN, "key", _k("key_delete")),
    "key_restore": Row(A.KEY_ADMIN, "key", _k("key_restore")),
    "key_rotate": Row(A.KEY_ADMIN, "key", _k("key_rotate")),
    "key_protect": Row(A.KEY_ADMIN, "key", _k("key_protect")),
    "key_unprotect": Row(A.KEY_ADMIN, "key", _k("key_unprotect")),
    "key_enable": Row(A.KEY_ADMIN, "key", _k("key_enable")),
    "key_disable": Row(A.KEY_ADMIN, "key", _k("key_disable")),
    "key_delete_key_material": Row(A.KEY_ADMIN, "external_key", _k("key_delete_key_material", "external_key")),
    "key_import_key_material": Row(A.KEY_ADMIN, "project", _import),
    "key_encrypt": Row(A.KEY_USE, "key", _k("key_encrypt", plaintext=b"matrix")),
    "key_decrypt": Row(A.KEY_USE, "key", _k("key_decrypt", ciphertext=lambda w: w.ciphertext)),
    "key_generate_data_key": Row(A.KEY_USE, "key", _k("key_generate_data_key")),
    "key_wrap": Row(A.KEY_USE, "kem_key", _k("key_wrap", "kem_key", plaintext=bytes(32))),
    "key_unwrap": Row(A.KEY_USE, "kem_key", _k("key_unwrap", "kem_key", ciphertext=lambda w: w.wrapped)),
    "key_sign": Row(A.KEY_USE, "signing_key", _k("key_sign", "signing_key", digest=lambda w: w.digest)),
    "key_verify": Row(
        A.KEY_USE,
        "signing_key",
        _k("key_verify", "signing_key", digest=lambda w: w.digest, signature=lambda w: w.signature),
    ),
    "key_get_public_key": Row(A.KEY_VIEW, "signing_key", _k("key_get_public_key", "signing_key")),
}

# Row-specific preconditions so that an *allowed* call succeeds.
PREPARE: dict[str, Callable[[World], None]] = {}


def _prepare_restore_secret(w: World) -> None:
    from secrets_app.services.secrets import secret_delete

    secret_delete(principal=SYSTEM, secret_id=w.secret.id)


def _prepare_restore_version(w: World) -> None:
    from secrets_app.services.versions import secret_version_delete

    secret_version_delete(principal=SYSTEM, secret_id=w.secret.id, revision="1")


def _prepare_restore_key(w: World) -> None:
    from keys_app.services.keys.lifecycle import key_delete, key_unprotect

    key_unprotect(principal=SYSTEM, key_id=w.key.id)
    key_delete(principal=SYSTEM, key_id=w.key.id)


def _prepare_unprotected_key(w: World) -> None:
    from keys_app.services.keys.lifecycle import key_unprotect

    key_unprotect(principal=SYSTEM, key_id=w.key.id)


def _prepare_disabled_key(w: World) -> None:
    from keys_app.services.keys.lifecycle import key_disable

    key_disable(principal=SYSTEM, key_id=w.key.id)


PREPARE.update(
    {
        "secret_restore": _prepare_restore_secret,
        "secret_version_restore": _prepare_restore_version,
        "key_restore": _prepare_restore_key,
        "key_delete": _prepare_unprotected_key,
        "key_enable": _prepare_disabled_key,
    }
)


def _world() -> World:
    from keys_app.services.keys.key_material import key_import_key_material
    from keys_app.services.keys.metadata import key_create
    from keys_app.services.keys.use import key_encrypt, key_sign, key_wrap
    from keys_app.services.projects import project_create
    from secrets_app.services.secrets import secret_create
    from secrets_app.services.versions import secret_version_create

    organization = uuid.uuid4()  # project names are unique per organisation: each world has its own
    project = project_create(principal=SYSTEM, name="alpha", organization_id=organization)
    other = project_create(principal=SYSTEM, name="beta", organization_id=organization)
    secret = secret_create(principal=SYSTEM, project_id=project.id, name="target", tags=["matrix-tag"])
    secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"payload")
    sibling = secret_create(principal=SYSTEM, project_id=project.id, name="sibling", type="certificate")
    key = key_create(principal=SYSTEM, project_id=project.id, name="target-key")
    sibling_key = key_create(principal=SYSTEM, project_id=project.id, name="sibling-key")
    signing = key_create(
        principal=SYSTEM, project_id=project.id, name="signer", usage="asymmetric_signing", algorithm="ec_p256_sha256"
    )
    kem = key_create(
        principal=SYSTEM, project_id=project.id, name="kem", usage="asymmetric_encryption", algorithm="ml_kem_768"
    )
    external = key_create(principal=SYSTEM, project_id=project.id, name="external", origin="external", unprotected=True)
    key_import_key_material(principal=SYSTEM, key_id=external.id, key_material=bytes(range(32)))
    digest = hashlib.sha256(b"message").digest()
    return World(
        project,
        other,
        secret,
        sibling,
        key,
        sibling_key,
        signing,
        kem,
        external,
        key_encrypt(principal=SYSTEM, key_id=key.id, plaintext=b"matrix").data,
        key_wrap(principal=SYSTEM, key_id=kem.id, plaintext=bytes(32)).data,
        key_sign(principal=SYSTEM, key_id=signing.id, digest=digest).data,
        digest,
    )


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for name, row in ROWS.items():
        model = "secrets_app.secret" if row.target == "secret" else "keys_app.key"
        for role in ROLES:
            scopes = ["project", "other_project"]
            if row.target != "project" and role in ROLES_FOR_MODEL[model]:
                scopes += ["object", "sibling"]
            cases += [(name, role, scope) for scope in scopes]
    return cases


@pytest.mark.parametrize(("service", "role", "scope"), _cases())
def test_matrix(hierarchy, service, role, scope):
    row = ROWS[service]
    world = _world()
    if service in PREPARE:
        PREPARE[service](world)
    user = get_user_model().objects.create_user(f"u-{role}")
    target_obj = world.project if row.target == "project" else getattr(world, row.target)
    grant_on = {
        "project": world.project,
        "other_project": world.other_project,
        "object": target_obj,
        "sibling": world.sibling_secret if row.target == "secret" else world.sibling_key,
    }[scope]
    role_grant(principal=SYSTEM, user=user, role=role, obj=grant_on)
    principal = Principal(user=user)
    expected = row.action in ROLES[role] and scope in ("project", "object")

    if row.listing is not None:
        assert row.listing(principal, world) is expected
        return
    if expected:
        row.call(principal, world)
        return
    with pytest.raises((ObjectNotFound, PermissionDenied)) as refused:
        row.call(principal, world)
    if scope == "other_project":
        assert isinstance(refused.value, ObjectNotFound), "another project's objects must answer 404, never 403"


def test_superuser_may_do_everything(hierarchy):
    root = Principal(user=get_user_model().objects.create_superuser("root"))
    for name, row in ROWS.items():
        world = _world()
        if name in PREPARE:
            PREPARE[name](world)
        if row.listing is not None:
            assert row.listing(root, world), name
        else:
            row.call(root, world)


@pytest.mark.parametrize("name", sorted(k for k in EXEMPT if "operator-only" in EXEMPT[k]))
def test_operator_only_services_refuse_users(hierarchy, name):
    world = _world()
    user = get_user_model().objects.create_user("admin-of-project")
    role_grant(principal=SYSTEM, user=user, role="project_admin", obj=world.project)
    module = next(importlib.import_module(m) for m in SERVICE_MODULES if hasattr(importlib.import_module(m), name))
    with pytest.raises((ObjectNotFound, PermissionDenied)):
        getattr(module, name)(principal=Principal(user=user))


def test_every_guarded_service_has_a_row():
    found = set()
    for module_name in SERVICE_MODULES:
        module = importlib.import_module(module_name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if (
                function.__module__ == module_name
                and not name.startswith("_")
                and ("principal" in inspect.signature(function).parameters)
            ):
                found.add(name)
    missing = found - set(ROWS) - set(EXEMPT)
    assert not missing, f"guarded services without an authorization-matrix row: {sorted(missing)}"
    assert not (set(ROWS) - found), f"rows for services that no longer exist: {sorted(set(ROWS) - found)}"


# --- destruction by every route, for every role (THREAT_MODEL.md, "Destruction") ----------------
#
# Each route is a sequence of steps: ``("user", call)`` is what the role under test
# attempts, ``("system", call)`` what an operator or a legitimate reader does later
# (run the expiry command, read once).  A role without the delete permission
# (SECRET_ADMIN) must not end with a destroyed version by any route; a role with it
# must succeed, which shows that each route does destroy when allowed.
def _past() -> Any:
    from django.utils import timezone

    return timezone.now() - timezone.timedelta(days=1)


def _expire(p: Principal, s: Any) -> Any:
    from secrets_app.services.expiry import secret_versions_expire

    return secret_versions_expire(principal=SYSTEM)


def _read_once(revision: str) -> Callable[[Principal, Any], Any]:
    def call(p: Principal, s: Any) -> Any:
        from secrets_app.services.access import secret_version_access

        return secret_version_access(principal=SYSTEM, secret_id=s.id, revision=revision)

    return call


def _add_version(p: Principal, s: Any) -> Any:
    from secrets_app.services.versions import secret_version_create

    return secret_version_create(principal=SYSTEM, secret_id=s.id, data=b"new")


def _sv(name: str, **kw: Any) -> Callable[[Principal, Any], Any]:
    def call(p: Principal, s: Any) -> Any:
        args = {k: (v() if callable(v) else v) for k, v in kw.items()}
        return _secret_service(name)(principal=p, secret_id=s.id, **args)

    return call


def _policy_delete_once() -> Any:
    return EphemeralPolicy(expires_once_accessed=True, action="delete")


DESTRUCTION_ROUTES: dict[str, list[tuple[str, Callable[[Principal, Any], Any]]]] = {
    "delete_version": [("user", _sv("secret_version_delete", revision="1"))],
    "version_expires_at_delete_then_expiry": [
        ("user", _sv("secret_version_update", revision="1", expires_at=_past, ephemeral_action="delete")),
        ("system", _expire),
    ],
    "version_expires_once_accessed_delete_then_read": [
        ("user", _sv("secret_version_update", revision="1", expires_once_accessed=True, ephemeral_action="delete")),
        ("system", _read_once("1")),
    ],
    "secret_policy_delete_then_read": [
        ("user", _sv("secret_update", ephemeral_policy=_policy_delete_once)),
        ("system", _add_version),
        ("system", _read_once("3")),
    ],
    # The version already carries an admin's ``delete`` action (30 days): bringing its
    # expiry forward is a destruction too.
    "move_expiry_of_a_delete_version": [
        ("user", _sv("secret_version_update", revision="2", expires_at=_past)),
        ("system", _expire),
    ],
}


def _destruction_target(project: Any) -> Any:
    from datetime import timedelta

    from secrets_app.services.secrets import secret_create
    from secrets_app.services.versions import secret_version_create, secret_version_update

    secret = secret_create(principal=SYSTEM, project_id=project.id, name="target")
    secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"payload")
    secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"payload-2")
    from django.utils import timezone

    secret_version_update(
        principal=SYSTEM,
        secret_id=secret.id,
        revision="2",
        expires_at=timezone.now() + timedelta(days=30),
        ephemeral_action="delete",
    )
    return secret


@pytest.mark.parametrize("route", sorted(DESTRUCTION_ROUTES))
@pytest.mark.parametrize("role", sorted(ROLES))
def test_no_destruction_without_the_delete_permission(hierarchy, role, route):
    from keys_app.services.projects import project_create
    from secrets_app.models import SecretVersion, VersionStatus

    project = project_create(principal=SYSTEM, name="alpha")
    secret = _destruction_target(project)
    user = get_user_model().objects.create_user(f"u-{role}")
    role_grant(principal=SYSTEM, user=user, role=role, obj=project)
    principal = Principal(user=user)
    may_delete = Action.SECRET_ADMIN in ROLES[role]

    refused = False
    for who, step in DESTRUCTION_ROUTES[route]:
        if who == "user":
            try:
                step(principal, secret)
            except (ObjectNotFound, PermissionDenied):
                refused = True
                break
        else:
            step(SYSTEM, secret)
    destroyed = SecretVersion.objects.filter(secret_id=secret.id, status=VersionStatus.DELETED).exists()
    scheduled = SecretVersion.objects.filter(secret_id=secret.id, status=VersionStatus.SCHEDULED_FOR_DELETION).exists()
    if may_delete:
        assert not refused
        assert destroyed or (route == "delete_version" and scheduled)
    else:
        assert refused, f"{role} may not delete, yet {route} was accepted"
        assert not destroyed and not scheduled


def test_a_writer_may_still_set_disable_policies(hierarchy):
    from keys_app.services.projects import project_create
    from secrets_app.models import SecretVersion, VersionStatus
    from secrets_app.services.secrets import secret_create, secret_update
    from secrets_app.services.versions import secret_version_update

    project = project_create(principal=SYSTEM, name="alpha")
    secret = _destruction_target(project)
    user = get_user_model().objects.create_user("writer")
    role_grant(principal=SYSTEM, user=user, role="secret_writer", obj=project)
    writer = Principal(user=user)
    secret_version_update(
        principal=writer, secret_id=secret.id, revision="1", expires_at=_past(), ephemeral_action="disable"
    )
    secret_update(
        principal=writer,
        secret_id=secret.id,
        ephemeral_policy=EphemeralPolicy(expires_once_accessed=True, action="disable"),
    )
    secret_create(
        principal=writer,
        project_id=project.id,
        name="eph",
        ephemeral_policy=EphemeralPolicy(expires_once_accessed=True, action="disable"),
    )
    with pytest.raises(PermissionDenied):
        secret_create(principal=writer, project_id=project.id, name="eph2", ephemeral_policy=_policy_delete_once())
    _expire(SYSTEM, secret)
    assert SecretVersion.objects.get(secret_id=secret.id, revision=1).status == VersionStatus.DISABLED


# --- granting roles (THREAT_MODEL.md, "Granting roles") ----------------------------------------
#: Who may grant what to someone else, written out by hand (not derived from the
#: implementation): a project admin anything; a secret admin the secret roles within
#: its own rights (not secret_reader: it does not read payloads); a key admin
#: key_admin (not key_user: it does not use keys).  Nobody grants to themselves.
MAY_GRANT_TO_OTHERS = {
    "project_admin": set(ROLES),
    "secret_admin": {"secret_writer", "secret_admin"},
    "key_admin": {"key_admin"},
}


@pytest.mark.parametrize("granter_role", sorted(ROLES))
def test_grant_matrix(hierarchy, granter_role):
    """Every role grants every role, to itself and to someone else, then revokes it."""
    from hkms_core.access.services import role_revoke
    from hkms_core.audit.models import AuditEvent
    from keys_app.services.projects import project_create

    project = project_create(principal=SYSTEM, name="alpha")
    users = get_user_model().objects
    granter = users.create_user("granter")
    role_grant(principal=SYSTEM, user=granter, role=granter_role, obj=project)
    other = users.create_user("other")
    for role in ROLES:
        for grantee, label in ((granter, "self"), (other, "other")):
            principal = Principal(user=granter)  # fresh grants each time
            allowed = label == "other" and role in MAY_GRANT_TO_OTHERS.get(granter_role, set())
            if allowed:
                role_grant(principal=principal, user=grantee, role=role, obj=project)
                role_revoke(principal=principal, user=grantee, role=role, obj=project)
                continue
            denied = AuditEvent.objects.filter(action="role.grant", outcome="denied").count()
            with pytest.raises((ObjectNotFound, PermissionDenied)):
                role_grant(principal=principal, user=grantee, role=role, obj=project)
            assert AuditEvent.objects.filter(action="role.grant", outcome="denied").count() == denied + 1, (
                f"refused grant of {role} to {label} by {granter_role} not audited"
            )
            # Revoking is refused alike (checked before the grant is looked up, held or not):
            # only who could grant a role may take it away.
            with pytest.raises((ObjectNotFound, PermissionDenied)):
                role_revoke(principal=principal, user=grantee, role=role, obj=project)


def test_superuser_does_not_grant_itself_but_an_operator_may(hierarchy):
    from keys_app.services.projects import project_create

    project = project_create(principal=SYSTEM, name="alpha")
    root = get_user_model().objects.create_superuser("root")
    with pytest.raises(PermissionDenied):
        role_grant(principal=Principal(user=root), user=root, role="secret_reader", obj=project)
    role_grant(principal=Principal.for_command(), user=root, role="secret_reader", obj=project)


def test_secret_admin_on_one_secret_cannot_grant_itself_reader(hierarchy):
    from keys_app.services.projects import project_create
    from secrets_app.services.secrets import secret_create

    project = project_create(principal=SYSTEM, name="alpha")
    secret = secret_create(principal=SYSTEM, project_id=project.id, name="s")
    admin = get_user_model().objects.create_user("sadmin")
    role_grant(principal=SYSTEM, user=admin, role="secret_admin", obj=secret)
    other = get_user_model().objects.create_user("other")
    for grantee in (admin, other):
        with pytest.raises(PermissionDenied):
            role_grant(principal=Principal(user=admin), user=grantee, role="secret_reader", obj=secret)
    role_grant(principal=Principal(user=admin), user=other, role="secret_writer", obj=secret)
