"""Protection blocks every route to destruction (THREAT_MODEL.md, "Destruction").

Each route is run as an operator (full rights) on a protected secret or key: the
version or key must end disabled or still scheduled for deletion -- restorable --
never destroyed.  The same route on an unprotected secret does destroy, so each
case shows that the route is real.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hkms_core.access.principal import Principal
from keys_app.models import Key, KeyState
from keys_app.services.keys.lifecycle import key_delete, key_protect, key_restore
from keys_app.services.keys.metadata import key_create, key_get
from keys_app.services.keys.scheduling import keys_purge_deleted
from keys_app.services.projects import project_create
from secrets_app.models import SecretVersion, VersionStatus
from secrets_app.services import access as access_services
from secrets_app.services import expiry as expiry_services
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services
from secrets_app.services.secrets import EphemeralPolicy

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])
SYSTEM = Principal.for_command()


def _status(secret, revision=1):
    return SecretVersion.objects.get(secret_id=secret.id, revision=revision).status


def _secret(project, protected, **kw):
    secret = secret_services.secret_create(principal=SYSTEM, project_id=project.id, name=f"s-{protected}", **kw)
    version_services.secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"payload")
    if protected:
        secret_services.secret_protect(principal=SYSTEM, secret_id=secret.id)
    return secret


def _expiry_delete(secret):
    version_services.secret_version_update(
        principal=SYSTEM,
        secret_id=secret.id,
        revision="1",
        expires_at=timezone.now() - timedelta(seconds=1),
        ephemeral_action="delete",
    )
    expiry_services.secret_versions_expire(principal=SYSTEM)


def _read_once_delete(secret):
    version_services.secret_version_update(
        principal=SYSTEM, secret_id=secret.id, revision="1", expires_once_accessed=True, ephemeral_action="delete"
    )
    access_services.secret_version_access(principal=SYSTEM, secret_id=secret.id, revision="1")


def _window_passed(secret):
    version_services.secret_version_delete(principal=SYSTEM, secret_id=secret.id, revision="1")
    expiry_services.secret_versions_expire(principal=SYSTEM, now=timezone.now() + timedelta(days=8))


ROUTES = {
    "expiry_with_delete": _expiry_delete,
    "read_once_with_delete": _read_once_delete,
    "deletion_window_passed": _window_passed,
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("protected", [False, True])
def test_protection_blocks_every_route_to_destruction(hierarchy, route, protected):
    project = project_create(principal=SYSTEM, name="alpha")
    secret = _secret(project, protected=False)
    if protected:
        secret_services.secret_protect(principal=SYSTEM, secret_id=secret.id)
    ROUTES[route](secret)
    status = _status(secret)
    if not protected:
        assert status == VersionStatus.DELETED
        return
    assert status in (VersionStatus.DISABLED, VersionStatus.SCHEDULED_FOR_DELETION), status
    if status == VersionStatus.SCHEDULED_FOR_DELETION:
        version_services.secret_version_restore(principal=SYSTEM, secret_id=secret.id, revision="1")
    else:
        version_services.secret_version_enable(principal=SYSTEM, secret_id=secret.id, revision="1")


def test_ephemeral_version_delete_on_a_protected_secret_only_schedules(hierarchy):
    project = project_create(principal=SYSTEM, name="alpha")
    policy = EphemeralPolicy(time_to_live=timedelta(hours=1), action="delete")
    open_secret = _secret(project, protected=False, ephemeral_policy=policy)
    version_services.secret_version_delete(principal=SYSTEM, secret_id=open_secret.id, revision="1")
    assert _status(open_secret) == VersionStatus.DELETED  # ephemeral: destroyed at once
    guarded = secret_services.secret_create(
        principal=SYSTEM, project_id=project.id, name="guarded", ephemeral_policy=policy
    )
    version_services.secret_version_create(principal=SYSTEM, secret_id=guarded.id, data=b"payload")
    secret_services.secret_protect(principal=SYSTEM, secret_id=guarded.id)
    version_services.secret_version_delete(principal=SYSTEM, secret_id=guarded.id, revision="1")
    assert _status(guarded) == VersionStatus.SCHEDULED_FOR_DELETION
    version_services.secret_version_restore(principal=SYSTEM, secret_id=guarded.id, revision="1")
    assert (
        access_services.secret_version_access(principal=SYSTEM, secret_id=guarded.id, revision="1").data == b"payload"
    )


def test_a_secret_protected_after_its_deletion_was_scheduled_is_not_destroyed(hierarchy):
    project = project_create(principal=SYSTEM, name="alpha")
    secret = _secret(project, protected=False)
    secret_services.secret_delete(principal=SYSTEM, secret_id=secret.id)
    secret_services.secret_protect(principal=SYSTEM, secret_id=secret.id)
    counts = expiry_services.secret_versions_expire(principal=SYSTEM, now=timezone.now() + timedelta(days=8))
    assert counts["secrets_destroyed"] == counts["versions_destroyed"] == 0
    secret_services.secret_restore(principal=SYSTEM, secret_id=secret.id)
    assert _status(secret) == VersionStatus.ENABLED


def test_a_key_protected_after_its_deletion_was_scheduled_is_not_purged(hierarchy):
    project = project_create(principal=SYSTEM, name="alpha")
    key = key_create(principal=SYSTEM, project_id=project.id, name="k", unprotected=True)
    key_delete(principal=SYSTEM, key_id=key.id)
    key_protect(principal=SYSTEM, key_id=key.id)
    later = timezone.now() + timedelta(days=8)
    assert keys_purge_deleted(principal=SYSTEM, now=later)["purged"] == []
    assert key_get(principal=SYSTEM, key_id=key.id, now=later).id == key.id
    key_restore(principal=SYSTEM, key_id=key.id, now=later)
    assert Key.objects.get(id=key.id).state == KeyState.ENABLED
