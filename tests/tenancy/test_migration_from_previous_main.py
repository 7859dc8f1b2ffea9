"""The Project move (issue 13) upgrades a database made by the previous main, in place.

``test_a_database_of_the_previous_main_upgrades_in_place`` takes the test database back to the
migration state of commit e717a9f (every project app at its leaf migration then, no tenancy app),
fills it with the historical models of that state -- a project with its default key, a second key,
a secret, a guardian grant to a user, a role grant (``RoleGrant`` and its object permissions), a
group's object permission -- migrates forward to the latest state and checks that every row, id
and grant survived: same project id, ``default_key_id`` kept, the content type renamed in place
(same id), guardian and the access rules still grant what they granted.

``test_a_fresh_database_migrates_to_the_same_schema`` migrates these apps from zero (no content
types left behind) and checks the same end state.

Both run on SQLite and, with ``HKMS_TEST_POSTGRES=1``, PostgreSQL.  They use the real schema
editor, hence ``transaction=True``; each leaves the database at the latest migrations.
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

#: The leaf migrations of the project's apps at commit e717a9f (before the move).
PREVIOUS_MAIN = [
    ("access", "0004_access_generation"),
    ("audit", "0003_keyed_chain"),
    ("backup", "0001_initial"),
    ("cluster", "0001_initial"),
    ("keys_app", "0004_rotation_lease"),
    ("secrets_app", "0003_project_name_unique"),
]
PROJECT_APPS = ("tenancy", "access", "keys_app", "secrets_app")


def _migrate(targets):
    """Migrate the default database to ``targets``; return the loader (graph rebuilt)."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader


def _migrate_to_latest():
    loader = MigrationExecutor(connection).loader
    _migrate(loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()


def _foreign_keys_on(table: str, column: str) -> list[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [name for name, c in constraints.items() if c["foreign_key"] and c["columns"] == [column]]


def _assert_latest_schema():
    from django.contrib.auth.models import Group, Permission

    from hkms_core.tenancy.models import Project

    content_type = ContentType.objects.get_for_model(Project)
    assert (content_type.app_label, content_type.model) == ("tenancy", "project")
    assert not ContentType.objects.filter(app_label="secrets_app", model="project").exists()
    assert _foreign_keys_on("secrets_app_project", "default_key_id") == []
    reader = Permission.objects.get(content_type=content_type, codename="read_secret_payload")
    assert Group.objects.get(name="secret_reader").permissions.filter(id=reader.id).exists()
    return content_type


def test_a_database_of_the_previous_main_upgrades_in_place():
    ContentType.objects.clear_cache()
    try:
        # Back to before the role groups (an earlier transactional test may have flushed them),
        # then forward to the previous main, which creates them as it did.
        _migrate([("secrets_app", "0003_project_name_unique"), ("access", "0002_initial"), ("tenancy", None)])
        loader = _migrate(PREVIOUS_MAIN)
        others = [node for node in loader.graph.leaf_nodes() if node[0] not in {"tenancy", *dict(PREVIOUS_MAIN)}]
        old = loader.project_state([*others, *PREVIOUS_MAIN]).apps
        assert "tenancy" not in {c.label for c in old.get_app_configs()}
        assert _foreign_keys_on("secrets_app_project", "default_key_id")  # the old foreign key
        seeded = _seed_previous_main(old)
    finally:
        _migrate_to_latest()

    from django.contrib.auth import get_user_model
    from guardian.core import ObjectPermissionChecker
    from guardian.shortcuts import get_perms

    from hkms_core.access.principal import Principal
    from hkms_core.access.roles import Action
    from hkms_core.access.services import can, role_grants_on
    from hkms_core.tenancy.models import Project
    from keys_app.models import Key
    from secrets_app.models import Secret

    content_type = _assert_latest_schema()
    assert content_type.id == seeded["content_type_id"]
    project = Project.objects.get(id=seeded["project_id"])
    assert (project.name, project.organization_id) == ("acme", seeded["organization_id"])
    assert project.default_key_id == seeded["default_key_id"]
    assert set(Key.objects.filter(project=project).values_list("id", flat=True)) == {
        seeded["default_key_id"],
        seeded["other_key_id"],
    }
    secret = Secret.objects.select_related("project").get(id=seeded["secret_id"])
    assert secret.project == project and secret.key_id == seeded["default_key_id"]

    users = get_user_model().objects
    alice, bob, carol = (users.get(username=name) for name in ("alice", "bob", "carol"))
    assert ObjectPermissionChecker(alice).has_perm("read_secret_payload", project)
    assert not ObjectPermissionChecker(alice).has_perm("use_key", project)
    assert {"view_project", "view_secret_metadata", "read_secret_payload"} <= set(get_perms(bob, project))
    assert ObjectPermissionChecker(carol).has_perm("use_key", project)  # through her group
    assert can(Principal(user=bob), Action.SECRET_READ, project)
    assert can(Principal(user=bob), Action.SECRET_READ, secret)  # a project grant covers its secrets
    assert not can(Principal(user=bob), Action.KEY_USE, project)
    assert [(g.user_id, g.role) for g in role_grants_on(project)] == [(bob.id, "secret_reader")]


def _seed_previous_main(apps):
    """Rows as the previous main wrote them, through its historical models."""
    import uuid

    content_type = apps.get_model("contenttypes", "ContentType").objects.get(app_label="secrets_app", model="project")
    permission = apps.get_model("auth", "Permission").objects
    user_model = apps.get_model("auth", "User")
    group_model = apps.get_model("auth", "Group")
    organization_id = uuid.uuid4()
    project = apps.get_model("secrets_app", "Project").objects.create(name="acme", organization_id=organization_id)
    keys = apps.get_model("keys_app", "Key").objects
    default_key = keys.create(project=project, name="acme-default", description="Project default key")
    other_key = keys.create(project=project, name="signing")
    project.default_key = default_key
    project.save(update_fields=["default_key"])
    secret = apps.get_model("secrets_app", "Secret").objects.create(project=project, name="db", key=default_key)

    def object_permission(model, codename, **who):
        apps.get_model("guardian", model).objects.create(
            permission=permission.get(content_type=content_type, codename=codename),
            content_type=content_type,
            object_pk=str(project.id),
            **who,
        )

    alice, bob, carol = (user_model.objects.create(username=name) for name in ("alice", "bob", "carol"))
    object_permission("UserObjectPermission", "read_secret_payload", user=alice)
    apps.get_model("access", "RoleGrant").objects.create(
        user=bob, role="secret_reader", content_type=content_type, object_pk=str(project.id), project_id=project.id
    )
    for codename in ("view_project", "view_secret_metadata", "read_secret_payload"):
        object_permission("UserObjectPermission", codename, user=bob)
    team = group_model.objects.create(name="acme-operators")
    carol.groups.add(team)
    object_permission("GroupObjectPermission", "use_key", group=team)
    return {
        "content_type_id": content_type.id,
        "project_id": project.id,
        "organization_id": organization_id,
        "default_key_id": default_key.id,
        "other_key_id": other_key.id,
        "secret_id": secret.id,
    }


def test_a_fresh_database_migrates_to_the_same_schema():
    ContentType.objects.clear_cache()
    try:
        loader = _migrate([(app, None) for app in PROJECT_APPS])
        assert not {app for app, _ in loader.applied_migrations} & set(PROJECT_APPS)
        # Forget these apps' content types (and, by cascade, their permissions) as a new database
        # would not have them; through a state without the apps (whose tables are gone).
        others = [node for node in loader.graph.leaf_nodes() if node[0] not in PROJECT_APPS]
        content_types = loader.project_state(others).apps.get_model("contenttypes", "ContentType")
        content_types.objects.filter(app_label__in=["secrets_app", *PROJECT_APPS]).delete()
    finally:
        _migrate_to_latest()
    _assert_latest_schema()


def test_the_models_match_the_migrations():
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.state import ProjectState

    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(loader.graph)
    assert not set(changes) & set(PROJECT_APPS), changes
