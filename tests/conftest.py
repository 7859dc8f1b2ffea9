"""Shared fixtures: a fresh root key per test, projects and secrets built through services."""

from __future__ import annotations

import pytest

ALL_DATABASES = ["default", "kek", "dek"]

# The longest test files, longest first.  scripts/run-tests.sh spreads the suite over pytest-xdist
# workers one file at a time in collection order (--dist loadfile --no-loadscope-reorder): these
# start first, so that none of them starts last and leaves one worker running it alone at the end.
# Only the order changes; a file missing here simply runs in its usual place.
LONGEST_FIRST = (
    "tests/keys_app/test_crash.py",
    "tests/test_bench_read_path_quick.py",
    "tests/providers/test_migration.py",
    "tests/test_make_run_server.py",
    "tests/race/test_races.py",
    "tests/keys_app/test_concurrent_reads.py",
    "tests/keys_app/test_plaintext_scan.py",
    "tests/keys_app/test_job_nodes.py",
    "tests/console/test_browser.py",
    "tests/test_api_live_fuzz.py",
    "tests/providers/test_multiworker.py",
    "tests/race/test_shredding.py",
    "tests/acceptance/test_secret_sdk.py",
    "tests/acceptance/test_key_sdk.py",
    "tests/multinode/test_shared_limits.py",
    "tests/test_bench_quick.py",
    "tests/operations/test_quickstart.py",
    "tests/multinode/test_failover_drill.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files of ``LONGEST_FIRST`` first, in that order; every other test keeps its place."""
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


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
