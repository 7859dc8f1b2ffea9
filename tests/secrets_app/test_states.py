"""The state machine of secrets and versions, deterministically: every transition is a
compare-and-set, reads honour every state on every path, destruction shreds the current DEK.

The interleavings of the live race tests (tests/race/) are reproduced here by
running the competing step in the gap where the old code read a stale value.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Q
from django.utils import timezone

from hkms_core import lifecycle
from hkms_core.access.principal import Principal
from hkms_core.errors import ObjectNotFound, PreconditionFailed
from keys_app.errors import KeyDisabled, KeyMaterialUnavailable
from keys_app.models import Dek
from keys_app.services.keys.lifecycle import key_disable
from keys_app.services.keys.metadata import key_create
from secrets_app import states, storage
from secrets_app.models import Secret, SecretVersion, VersionStatus
from secrets_app.services import access as access_services
from secrets_app.services import expiry as expiry_services
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services
from secrets_app.services.dek_rotation import deks_rotate

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


@pytest.fixture
def admin(principal_with):
    return principal_with("project_admin", name="owner")


@pytest.fixture
def secret(admin, project):
    secret = secret_services.secret_create(principal=admin, project_id=project.id, name="db")
    for payload in (b"one", b"two"):
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=payload)
    return secret


def status(secret, revision=1) -> str:
    return SecretVersion.objects.get(secret=secret, revision=revision).status


def read(admin, secret, revision="1", by_path=False):
    if by_path:
        return access_services.secret_version_access_by_path(
            principal=admin, project_id=secret.project_id, secret_path="/", secret_name=secret.name, revision=revision
        )
    return access_services.secret_version_access(principal=admin, secret_id=secret.id, revision=revision)


# --- transitions are compare-and-set ------------------------------------------------------------------
def test_an_enable_that_read_enabled_before_a_deletion_cannot_undo_it(admin, secret):
    """The old enable read the status, then wrote it back: a deletion in between was lost.
    The transition is now a CAS on the row's status, whatever the caller read before."""
    stale = SecretVersion.objects.get(secret=secret, revision=1)  # read: enabled
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")  # commits meanwhile
    assert stale.status == VersionStatus.ENABLED
    moved = storage.secret_version_transition(stale, from_statuses=states.FROM["enable"], status=VersionStatus.ENABLED)
    assert moved is False and status(secret) == VersionStatus.SCHEDULED_FOR_DELETION


def test_enable_is_refused_while_the_secret_is_scheduled_even_if_a_row_says_enabled(admin, secret):
    Secret.objects.filter(id=secret.id).update(deletion_requested_at=timezone.now())
    for action in (version_services.secret_version_enable, version_services.secret_version_disable):
        with pytest.raises(PreconditionFailed) as info:
            action(principal=admin, secret_id=secret.id, revision="1")
        assert info.value.details["precondition"] == "scheduled_for_deletion"
    assert status(secret) == VersionStatus.ENABLED  # untouched


def test_a_second_delete_fails_and_keeps_the_first_status(admin, secret):
    version_services.secret_version_disable(principal=admin, secret_id=secret.id, revision="1")
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    with pytest.raises(PreconditionFailed):
        version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    version = SecretVersion.objects.get(secret=secret, revision=1)
    assert version.status_before_deletion == VersionStatus.DISABLED  # not overwritten by the second
    version_services.secret_version_restore(principal=admin, secret_id=secret.id, revision="1")
    assert status(secret) == VersionStatus.DISABLED


def test_restoring_a_secret_brings_back_only_what_its_deletion_scheduled(admin, secret):
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    SecretVersion.objects.filter(secret=secret, revision=1).update(
        deletion_requested_at=timezone.now() - timedelta(hours=1)
    )
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    assert [status(secret, r) for r in (1, 2)] == [VersionStatus.SCHEDULED_FOR_DELETION] * 2
    secret_services.secret_restore(principal=admin, secret_id=secret.id)
    assert [status(secret, r) for r in (1, 2)] == [VersionStatus.SCHEDULED_FOR_DELETION, VersionStatus.ENABLED]


def test_a_deletion_whose_window_passed_cannot_be_restored(admin, secret):
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    past = timezone.now() - lifecycle.DELETION_DELAY - timedelta(seconds=1)
    SecretVersion.objects.filter(secret=secret, revision=1).update(deletion_requested_at=past)
    with pytest.raises(PreconditionFailed) as info:
        version_services.secret_version_restore(principal=admin, secret_id=secret.id, revision="1")
    assert info.value.details["precondition"] == "deletion_final"
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    Secret.objects.filter(id=secret.id).update(deletion_requested_at=past)
    with pytest.raises(PreconditionFailed):
        secret_services.secret_restore(principal=admin, secret_id=secret.id)


def test_no_version_is_added_to_a_secret_scheduled_for_deletion_and_its_dek_goes(secret):
    Secret.objects.filter(id=secret.id).update(deletion_requested_at=timezone.now())  # after the caller's check
    deks = Dek.objects.using("dek").count()
    with pytest.raises(PreconditionFailed):
        storage.secret_version_create(secret=Secret.objects.select_related("key").get(id=secret.id), data=b"late")
    assert SecretVersion.objects.filter(secret=secret).count() == 2
    assert Dek.objects.using("dek").count() == deks


def test_expiry_does_not_destroy_a_version_restored_after_it_was_listed(admin, secret):
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    version = SecretVersion.objects.get(secret=secret, revision=1)
    version_services.secret_version_restore(principal=admin, secret_id=secret.id, revision="1")  # after the listing
    due = Q(status=VersionStatus.SCHEDULED_FOR_DELETION)
    assert storage.secret_version_destroy(version, only_if=due) is False
    assert status(secret) == VersionStatus.ENABLED and read(admin, secret).data == b"one"


# --- reads honour every state, on every path ----------------------------------------------------------
@pytest.mark.parametrize("by_path", [False, True])
def test_reads_refuse_a_secret_scheduled_for_deletion_whatever_the_version_row_says(admin, secret, by_path):
    assert read(admin, secret, by_path=by_path).data == b"one"
    Secret.objects.filter(id=secret.id).update(deletion_requested_at=timezone.now())  # the race's leftover
    with pytest.raises(PreconditionFailed) as info:
        read(admin, secret)
    assert info.value.details["precondition"] == VersionStatus.SCHEDULED_FOR_DELETION
    if by_path:  # the by-path lookup does not find a secret scheduled for deletion at all
        with pytest.raises((PreconditionFailed, ObjectNotFound)):
            read(admin, secret, by_path=True)


@pytest.mark.parametrize("revision", ["1", "latest", "latest_enabled"])
def test_the_hot_path_refuses_a_disabled_or_deleted_key_like_the_general_path(admin, project, revision):
    key = key_create(principal=admin, project_id=project.id, name="k", unprotected=True)
    secret = secret_services.secret_create(principal=admin, project_id=project.id, name="k-secret", key_id=key.id)
    version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"payload")
    assert read(admin, secret, revision).data == b"payload"  # DEK now cached in this process
    key_disable(principal=admin, key_id=key.id)
    with pytest.raises(KeyDisabled):
        read(admin, secret, revision)
    secret.key.refresh_from_db()
    with pytest.raises(KeyDisabled):  # the check list itself, for other read paths
        states.version_readable(secret, SecretVersion.objects.get(secret=secret), timezone.now())


def test_reads_refuse_a_destroyed_dek(admin, secret):
    version = SecretVersion.objects.get(secret=secret, revision=1)
    Dek.objects.using("dek").filter(id=version.dek_id).delete()
    from keys_app.services.material import key_cache

    key_cache().clear()
    with pytest.raises(KeyMaterialUnavailable):
        read(admin, secret)
    SecretVersion.objects.filter(id=version.id).update(dek_id=None, ciphertext=None)  # a half-finished destroy
    with pytest.raises(KeyMaterialUnavailable):
        states.version_readable(secret, SecretVersion.objects.get(id=version.id), timezone.now())


# --- destroying shreds the version's current DEK -------------------------------------------------------
def test_destroy_with_a_stale_version_deletes_the_dek_a_rotation_put_in_place(admin, secret):
    """The old destroy deleted the ``dek_id`` it was handed; a rotation had moved it: the new DEK survived."""
    version = SecretVersion.objects.get(secret=secret, revision=1)  # read by the expiry...
    old_dek = version.dek_id
    deks_rotate(secret_id=secret.id)  # ...then a rotation moves it to a new DEK
    new_dek = SecretVersion.objects.get(id=version.id).dek_id
    assert new_dek != old_dek
    assert storage.secret_version_destroy(version) is True
    assert not Dek.objects.using("dek").filter(Q(id__in=[old_dek, new_dek]) | Q(owner_id=version.id)).exists()
    row = SecretVersion.objects.get(id=version.id)
    assert row.status == VersionStatus.DELETED and row.dek_id is None and row.ciphertext is None


def test_expiry_destroys_with_the_event_in_the_transaction_and_reruns_cleanly(admin, secret):
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="2")
    # The window has passed (a future --now is refused without --dry-run): move the deletion back.
    SecretVersion.objects.filter(secret=secret, revision=2).update(
        deletion_requested_at=timezone.now() - lifecycle.DELETION_DELAY - timedelta(minutes=1)
    )
    call_command("expire_secret_versions", "--yes")
    assert status(secret, 2) == VersionStatus.DELETED
    counts = expiry_services.secret_versions_expire(
        principal=Principal.for_command(), now=timezone.now() + timedelta(days=8)
    )
    assert counts == {"versions_disabled": 0, "versions_destroyed": 0, "secrets_destroyed": 0}
    assert read(admin, secret).data == b"one"
