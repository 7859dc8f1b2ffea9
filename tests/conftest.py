"""Shared fixtures: a fresh root key per test, projects and secrets built through services."""

from __future__ import annotations

import pytest

ALL_DATABASES = ["default", "kek", "dek"]


@pytest.fixture(autouse=True)
def _isolated_root_key(settings, tmp_path):
    """Each test gets its own root keyring file and empty key caches."""
    from keys_app.providers import reset_providers
    from keys_app.services import material, root

    settings.HKMS_ROOT_KEY_PROVIDER = "file"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "file": {"path": str(tmp_path / "root_keyring.json")},
    }
    reset_providers()
    root.forget_verified_root_keys()
    material.key_cache().clear()
    yield
    reset_providers()
    root.forget_verified_root_keys()
    material.key_cache().clear()


@pytest.fixture
def hierarchy(db, django_db_blocker):
    """An initialised hierarchy (REK version 1 in the file provider)."""
    from keys_app.services.root import hierarchy_init

    row, _ = hierarchy_init()
    return row


@pytest.fixture
def project(hierarchy):
    from keys_app.services.projects import project_create_with_default_key as project_create

    return project_create(name="acme")


@pytest.fixture
def other_project(hierarchy):
    from keys_app.services.projects import project_create_with_default_key as project_create

    return project_create(name="globex")


@pytest.fixture
def make_secret(project):
    """Create a secret with the given payloads as its versions (revision 1, 2, …)."""
    from secrets_app.storage import secret_create, secret_version_create

    counter = iter(range(1_000_000))

    def make(*payloads: bytes, target_project=None, **fields):
        owner = target_project or project
        secret = secret_create(project=owner, name=fields.pop("name", f"secret-{next(counter)}"), **fields)
        for payload in payloads:
            secret_version_create(secret=secret, data=payload)
        secret.refresh_from_db()
        return secret

    return make


@pytest.fixture(scope="module")
def hkms_server(tmp_path_factory):
    """A real gunicorn server (2 workers) with a fresh data dir, shared by one test module."""
    from tests.live import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()


@pytest.fixture
def principal_with(project):
    """``principal_with(role, obj=None, name=None)``: a principal for a fresh user holding ``role`` on
    ``obj`` (the ``project`` fixture by default); ``role=None`` makes a stranger with no role at all."""
    from django.contrib.auth import get_user_model

    from hkms_core.access.principal import Principal
    from hkms_core.access.services import role_grant

    counter = iter(range(1_000_000))

    def make(role, obj=None, name=None):
        user = get_user_model().objects.create_user(name or f"user-{next(counter)}")
        if role:
            role_grant(principal=Principal.for_command(), user=user, role=role, obj=obj or project)
        return Principal(user=user)

    return make


@pytest.fixture
def clear_throttles():
    """Throttle counters live in Django's cache: start and end a test with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
