"""Routing: every table exists only on its own database, and no relation crosses databases.

The schemas inspected are the real ones that migrations built on each alias
(SQLite or PostgreSQL), read back with ``connection.introspection``.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connections, router

from hkms_core.routers import HierarchyRouter, database_for
from hkms_core.tenancy.models import Project
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.services.projects import project_default_key
from secrets_app.models import Secret, SecretVersion

ALIASES = ["default", "kek", "dek"]
pytestmark = pytest.mark.django_db(databases=ALIASES)

EXPECTED = {
    RootKeyVersion: "kek",
    KekVersion: "kek",
    RotationJob: "kek",
    Dek: "dek",
    Key: "default",
    Project: "default",
    Secret: "default",
    SecretVersion: "default",
}


def concrete_models():
    return [
        model for model in apps.get_models(include_auto_created=True) if model._meta.managed and not model._meta.proxy
    ]


def tables():
    return {alias: set(connections[alias].introspection.table_names()) for alias in ALIASES}


def test_key_material_models_are_routed_to_their_database():
    for model, alias in EXPECTED.items():
        assert router.db_for_read(model) == alias, model
        assert router.db_for_write(model) == alias, model


def test_every_model_table_exists_only_on_its_own_database():
    actual = tables()
    misplaced = []
    for model in concrete_models():
        table = model._meta.db_table
        home = router.db_for_write(model)
        where = sorted(alias for alias in ALIASES if table in actual[alias])
        if where != [home]:
            misplaced.append(f"{model._meta.label} ({table}): expected on {home}, found on {where}")
    assert misplaced == []


def test_key_databases_hold_nothing_but_key_material():
    actual = tables()
    material = {
        "kek": {
            "keys_app_rootkeyversion",
            "keys_app_kekversion",
            "keys_app_rotationjob",
            "audit_auditkey",  # the audit chain's key, wrapped by the REK like a KEK
            "backup_backuprecord",  # which REK versions retained backups still need
        },
        "dek": {"keys_app_dek"},
    }
    for alias, own in material.items():
        # django_migrations is Django's own bookkeeping, present on every migrated alias.
        assert actual[alias] - {"django_migrations"} == own, alias


@pytest.mark.parametrize("prefix", ["auth_", "guardian_", "django_admin_log", "django_session", "django_content_type"])
def test_framework_tables_live_only_on_default(prefix):
    actual = tables()
    on_default = {t for t in actual["default"] if t.startswith(prefix)}
    assert on_default, f"no {prefix} table on default"
    for alias in ("kek", "dek"):
        assert not {t for t in actual[alias] if t.startswith(prefix)}, alias


def test_secret_ciphertexts_never_reach_the_key_databases():
    for alias in ("kek", "dek"):
        introspection = connections[alias].introspection
        with connections[alias].cursor() as cursor:
            names = introspection.table_names(cursor)
        assert "secrets_app_secretversion" not in names
        assert "keys_app_key" not in names


def test_no_foreign_key_crosses_databases():
    crossing = []
    for model in concrete_models():
        home = router.db_for_write(model)
        for field in model._meta.get_fields():
            if field.is_relation and field.concrete and field.related_model is not None:
                target = router.db_for_write(field.related_model)
                if target != home:
                    crossing.append(f"{model._meta.label}.{field.name} -> {field.related_model._meta.label}")
    assert crossing == []


def test_router_refuses_relations_across_databases(project):
    routing = HierarchyRouter()
    dek = Dek(key_id=project.default_key_id, kek_version=1, wrapped=b"")
    kek = KekVersion(key_id=project.default_key_id, version=1, rek_version=1)
    assert routing.allow_relation(project, project_default_key(project)) is True
    assert routing.allow_relation(kek, RootKeyVersion(version=1)) is True
    assert routing.allow_relation(project_default_key(project), kek) is False
    assert routing.allow_relation(kek, dek) is False
    assert routing.allow_relation(project, dek) is False
    assert router.allow_relation(project_default_key(project), dek) is False


def test_migrations_are_allowed_only_on_the_home_database():
    routing = HierarchyRouter()
    for model, home in EXPECTED.items():
        for alias in ALIASES:
            allowed = routing.allow_migrate(alias, model._meta.app_label, model._meta.model_name)
            assert allowed is (alias == home), (model, alias)
    assert database_for("auth", "user") == "default"
    assert routing.allow_migrate("kek", "guardian", "userobjectpermission") is False
    # Operations without a model (RunPython/RunSQL) run on default unless they name a database.
    assert routing.allow_migrate("default", "keys_app") is True
    assert routing.allow_migrate("kek", "keys_app") is False
    assert routing.allow_migrate("kek", "keys_app", target_db="kek") is True


def test_queries_go_to_the_routed_database(project):
    from django.test.utils import CaptureQueriesContext

    with (
        CaptureQueriesContext(connections["kek"]) as kek_q,
        CaptureQueriesContext(connections["dek"]) as dek_q,
        CaptureQueriesContext(connections["default"]) as default_q,
    ):
        assert KekVersion.objects.filter(key_id=project.default_key_id).count() == 1
        assert Dek.objects.count() == 0
    assert len(kek_q) == 1 and "keys_app_kekversion" in kek_q[0]["sql"]
    assert len(dek_q) == 1 and "keys_app_dek" in dek_q[0]["sql"]
    assert len(default_q) == 0
