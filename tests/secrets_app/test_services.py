"""Secret Manager services: revisions, selectors, ephemeral policies, validation, deletion and
restore, crypto-shredding, moving by path, key choice, disabled keys, authorization and audit."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from guardian.models import UserObjectPermission

from hkms_core.access.models import RoleGrant
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from hkms_core.errors import Conflict, InvalidArgument, ObjectNotFound, PermissionDenied, PreconditionFailed
from keys_app.errors import KeyDisabled
from keys_app.models import Dek
from keys_app.services.keys.lifecycle import key_disable, key_enable
from keys_app.services.keys.metadata import key_create
from secrets_app import selectors, storage
from secrets_app.models import Secret, SecretVersion, VersionStatus
from secrets_app.selectors import SecretFilter
from secrets_app.services import access as access_services
from secrets_app.services import expiry as expiry_services
from secrets_app.services import lookups
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services
from secrets_app.services.dek_rotation import deks_rotate
from secrets_app.services.secrets import EphemeralPolicy
from secrets_app.states import Expired
from secrets_app.validation import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

PEM_CERT = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVGb3JUZXN0czAKBggqhkjOPQQDAjAP\n"
    b"-----END CERTIFICATE-----\n"
)
SSH_PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def admin(principal_with):
    return principal_with("project_admin", name="owner")


@pytest.fixture
def new_secret(admin, project):
    def make(name: str = "db-password", *payloads: bytes, **fields):
        secret = secret_services.secret_create(principal=admin, project_id=project.id, name=name, **fields)
        for payload in payloads:
            version_services.secret_version_create(principal=admin, secret_id=secret.id, data=payload)
        secret.refresh_from_db()
        return secret

    return make


def access(principal, secret, revision="latest_enabled", **kwargs) -> bytes:
    return access_services.secret_version_access(
        principal=principal, secret_id=secret.id, revision=revision, **kwargs
    ).data


def statuses(secret) -> list[str]:
    return list(SecretVersion.objects.filter(secret=secret).order_by("revision").values_list("status", flat=True))


def dek_exists(dek_id) -> bool:
    return Dek.objects.using("dek").filter(id=dek_id).exists()


# --- revisions and selectors ------------------------------------------------------------------
def test_versions_are_numbered_and_latest_selectors_resolve(admin, new_secret):
    secret = new_secret("s", b"one", b"two", b"three")
    assert secret.version_count == 3 and statuses(secret) == ["enabled"] * 3
    assert [access(admin, secret, r) for r in ("1", "2", "3", "latest", "latest_enabled")] == [
        b"one",
        b"two",
        b"three",
        b"three",
        b"three",
    ]
    payload = access_services.secret_version_access(principal=admin, secret_id=secret.id, revision="2")
    assert payload.revision == 2 and payload.type == "opaque" and payload.data_crc32 == zlib.crc32(b"two")
    assert "two" not in repr(payload)


def test_latest_enabled_skips_a_disabled_newest_version(admin, new_secret):
    secret = new_secret("s", b"one", b"two")
    version_services.secret_version_disable(principal=admin, secret_id=secret.id, revision="2")
    assert access(admin, secret, "latest_enabled") == b"one"
    assert version_services.secret_version_get(principal=admin, secret_id=secret.id, revision="latest").revision == 2
    with pytest.raises(PreconditionFailed):
        access(admin, secret, "latest")  # the newest is disabled
    version_services.secret_version_disable(principal=admin, secret_id=secret.id, revision="1")
    with pytest.raises(ObjectNotFound):
        access(admin, secret, "latest_enabled")  # no enabled version left
    version_services.secret_version_enable(principal=admin, secret_id=secret.id, revision="2")
    assert access(admin, secret, "latest_enabled") == b"two"


def test_disable_previous_disables_every_older_enabled_version(admin, new_secret):
    secret = new_secret("s", b"one", b"two")
    version = version_services.secret_version_create(
        principal=admin, secret_id=secret.id, data=b"three", disable_previous=True
    )
    assert version.revision == 3 and version.secret.version_count == 3
    assert statuses(secret) == ["disabled", "disabled", "enabled"]
    assert access(admin, secret) == b"three"


@pytest.mark.parametrize("revision", ["0", "-1", "abc", "1.5", "²", "٣", "latest_disabled", "9" * 30, ""])
def test_bad_revisions_are_invalid_arguments(admin, new_secret, revision):
    secret = new_secret("s", b"one")
    with pytest.raises(InvalidArgument):
        version_services.secret_version_get(principal=admin, secret_id=secret.id, revision=revision)


def test_a_missing_revision_is_not_found(admin, new_secret):
    secret = new_secret("s", b"one")
    with pytest.raises(ObjectNotFound):
        version_services.secret_version_get(principal=admin, secret_id=secret.id, revision="2")


# --- ephemeral policies -----------------------------------------------------------------------
@pytest.mark.parametrize("action", ["disable", "delete"])
def test_expires_once_accessed_serves_one_read(admin, new_secret, action):
    secret = new_secret("once", ephemeral_policy=EphemeralPolicy(expires_once_accessed=True, action=action))
    version = version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"one-time")
    dek_id = version.dek_id
    assert version.expires_once_accessed and version.ephemeral_action == action
    assert access(admin, secret, "1") == b"one-time"
    with pytest.raises(Expired) as info:
        access(admin, secret, "1")
    assert info.value.status == 410 and info.value.type == "resource_expired"
    version.refresh_from_db()
    assert version.accessed_at is not None
    if action == "delete":  # destroyed at once: the DEK is gone
        assert version.status == VersionStatus.DELETED and version.ciphertext is None and not dek_exists(dek_id)
    else:
        assert version.status == VersionStatus.DISABLED and dek_exists(dek_id)


def test_time_to_live_is_enforced_at_access_time_with_an_injected_clock(admin, new_secret):
    secret = new_secret("ttl", ephemeral_policy=EphemeralPolicy(time_to_live=timedelta(hours=1), action="disable"))
    t0 = timezone.now()
    version = version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"short-lived", now=t0)
    assert version.expires_at == t0 + timedelta(hours=1)
    assert access(admin, secret, "1", now=t0 + timedelta(minutes=59)) == b"short-lived"
    with pytest.raises(Expired):
        access(admin, secret, "1", now=t0 + timedelta(hours=1))
    # Enforced before the expire command runs; the command then applies the action for good.
    assert statuses(secret) == ["enabled"]
    counts = expiry_services.secret_versions_expire(principal=Principal.for_command(), now=t0 + timedelta(hours=2))
    assert counts == {"versions_disabled": 1, "versions_destroyed": 0, "secrets_destroyed": 0}
    assert statuses(secret) == ["disabled"]


def test_time_to_live_with_delete_action_is_destroyed_by_expire(admin, new_secret):
    secret = new_secret(
        "ttl-del", ephemeral_policy=EphemeralPolicy(time_to_live=timedelta(seconds=30), action="delete")
    )
    t0 = timezone.now()
    version = version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"x", now=t0)
    operator = Principal.for_command()
    assert (
        expiry_services.secret_versions_expire(principal=operator, now=t0 + timedelta(seconds=29))["versions_destroyed"]
        == 0
    )
    assert (
        expiry_services.secret_versions_expire(principal=operator, now=t0 + timedelta(seconds=31))["versions_destroyed"]
        == 1
    )
    assert statuses(secret) == ["deleted"] and not dek_exists(version.dek_id)


def test_an_expiry_set_on_one_version_without_an_action_disables_it(admin, new_secret):
    secret = new_secret("plain", b"one")
    t0 = timezone.now()
    version_services.secret_version_update(
        principal=admin, secret_id=secret.id, revision="1", expires_at=t0 + timedelta(minutes=5)
    )
    with pytest.raises(Expired):
        access(admin, secret, "1", now=t0 + timedelta(minutes=6))
    counts = expiry_services.secret_versions_expire(principal=Principal.for_command(), now=t0 + timedelta(minutes=6))
    assert counts == {"versions_disabled": 1, "versions_destroyed": 0, "secrets_destroyed": 0}
    assert statuses(secret) == ["disabled"]  # not destroyed: no delete action was asked for
    version_services.secret_version_update(
        principal=admin, secret_id=secret.id, revision="1", expires_at=t0 + timedelta(days=30)
    )
    version_services.secret_version_enable(principal=admin, secret_id=secret.id, revision="1")
    assert access(admin, secret, "1") == b"one"


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (EphemeralPolicy(), "ephemeral_policy"),
        (EphemeralPolicy(time_to_live=timedelta(hours=1)), "ephemeral_policy.action"),
        (EphemeralPolicy(time_to_live=timedelta(0), action="delete"), "ephemeral_policy.time_to_live"),
        (EphemeralPolicy(time_to_live=timedelta(days=366), action="delete"), "ephemeral_policy.time_to_live"),
        (EphemeralPolicy(expires_once_accessed=True, action="explode"), "ephemeral_policy.action"),
    ],
)
def test_bad_ephemeral_policies_are_refused(admin, project, policy, field):
    with pytest.raises(InvalidArgument) as info:
        secret_services.secret_create(principal=admin, project_id=project.id, name="e", ephemeral_policy=policy)
    assert info.value.field == field


def test_deleting_an_ephemeral_secret_or_version_destroys_at_once(admin, new_secret, principal_with):
    policy = EphemeralPolicy(time_to_live=timedelta(hours=1), action="disable")
    secret = new_secret("eph", b"one", b"two", ephemeral_policy=policy)
    versions = list(SecretVersion.objects.filter(secret=secret).order_by("revision"))
    deleted = version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    assert deleted.status == VersionStatus.DELETED and not dek_exists(versions[0].dek_id)
    reader = principal_with("secret_reader", obj=secret)
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    assert not Secret.objects.filter(id=secret.id).exists() and not dek_exists(versions[1].dek_id)
    with pytest.raises(ObjectNotFound):
        secret_services.secret_get(principal=admin, secret_id=secret.id)
    # the grants on a destroyed secret go with it: nothing is left for a reused id to inherit
    assert not RoleGrant.objects.filter(object_pk=str(secret.id)).exists()
    assert not UserObjectPermission.objects.filter(object_pk=str(secret.id)).exists()
    assert reader.user.role_grants.count() == 0


# --- payload validation -----------------------------------------------------------------------
def test_crc32_is_checked_on_create_stored_and_returned(admin, new_secret):
    secret = new_secret("crc")
    with pytest.raises(InvalidArgument) as info:
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"abc", data_crc32=123)
    assert info.value.field == "data_crc32" and SecretVersion.objects.filter(secret=secret).count() == 0
    version = version_services.secret_version_create(
        principal=admin, secret_id=secret.id, data=b"abc", data_crc32=zlib.crc32(b"abc")
    )
    assert version.data_crc32 == zlib.crc32(b"abc")
    version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"no crc given")
    assert access_services.secret_version_access(
        principal=admin, secret_id=secret.id, revision="2"
    ).data_crc32 == zlib.crc32(b"no crc given")


GOOD = {
    "opaque": [b"\x00\xffanything"],
    "certificate": [PEM_CERT, PEM_CERT + PEM_CERT],
    "key_value": [b'{"a": "1", "b": 2, "c": true, "d": null}', b"{}"],
    "basic_credentials": [b'{"username": "u", "password": "p"}'],
    "database_credentials": [
        b'{"engine": "postgres", "username": "u", "password": "p", "host": "h", "dbname": "d", "port": "5432"}'
    ],
    "ssh_key": [json.dumps({"ssh_private_key": SSH_PEM}).encode()],
}
BAD = {
    "certificate": [b"not a certificate", b"-----BEGIN CERTIFICATE-----\nabc\n-----END PRIVATE KEY-----\n"],
    "key_value": [b"[1, 2]", b'{"nested": {"a": 1}}', b"not json", b"\xff\xfe"],
    "basic_credentials": [b'{"username": "u"}', b'{"username": "u", "password": 5}', b'"u:p"'],
    "database_credentials": [b'{"engine": "postgres", "username": "u", "password": "p", "host": "h", "dbname": "d"}'],
    "ssh_key": [b'{"ssh_private_key": "ssh-ed25519 AAAA"}', b"{}"],
}


@pytest.mark.parametrize("type_", list(GOOD))
def test_each_type_accepts_its_shape(admin, new_secret, type_):
    secret = new_secret(f"t-{type_}", type=type_)
    for n, payload in enumerate(GOOD[type_], start=1):
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=payload)
        accessed = access_services.secret_version_access(principal=admin, secret_id=secret.id, revision=str(n))
        assert accessed.data == payload and accessed.type == type_


@pytest.mark.parametrize(("type_", "payload"), [(t, p) for t, payloads in BAD.items() for p in payloads])
def test_a_version_must_match_its_secrets_type(admin, new_secret, type_, payload):
    secret = new_secret(f"t-{type_}", type=type_)
    with pytest.raises(InvalidArgument) as info:
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=payload)
    assert info.value.field == "data"
    assert payload.decode(errors="replace") not in info.value.message


def test_unknown_type_is_refused(admin, project):
    with pytest.raises(InvalidArgument):
        secret_services.secret_create(principal=admin, project_id=project.id, name="x", type="password")


def test_payload_size_limit_is_64_kib(admin, new_secret):
    secret = new_secret("big")
    version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"x" * MAX_PAYLOAD_BYTES)
    for data in (b"x" * (MAX_PAYLOAD_BYTES + 1), b""):
        with pytest.raises(InvalidArgument):
            version_services.secret_version_create(principal=admin, secret_id=secret.id, data=data)
    assert MAX_PAYLOAD_BYTES == 65536 and secret.versions.count() == 1


# --- names and paths --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (None, "/"),
        ("/", "/"),
        ("/apps/web", "/apps/web"),
        ("/a.b_c-D9/", "/a.b_c-D9"),
        ("/" + "s" * 255, "/" + "s" * 255),
    ],
)
def test_valid_paths_are_normalised(admin, project, raw, stored):
    secret = secret_services.secret_create(principal=admin, project_id=project.id, name="p", path=raw)
    assert secret.path == stored


@pytest.mark.parametrize(
    "raw",
    ["apps", "/a//b", "/a//", "///", "/a b", "/..", "/a/./b", "/é", "/" + "s" * 256, "/a\x00", "\\a", 5, "/a/b\n"],
)
def test_invalid_paths_are_refused(admin, project, raw):
    with pytest.raises(InvalidArgument) as info:
        secret_services.secret_create(principal=admin, project_id=project.id, name="p", path=raw)
    assert info.value.field == "path"


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", "a b", "n" * 256, "é", None, "x\n"])
def test_invalid_names_are_refused(admin, project, name):
    with pytest.raises(InvalidArgument) as info:
        secret_services.secret_create(principal=admin, project_id=project.id, name=name)
    assert info.value.field == "name"


def test_names_are_unique_per_project_and_path(admin, project, other_project, principal_with, new_secret):
    new_secret("api-key", path="/prod")
    with pytest.raises(Conflict):
        secret_services.secret_create(principal=admin, project_id=project.id, name="api-key", path="/prod/")
    secret_services.secret_create(principal=admin, project_id=project.id, name="api-key", path="/staging")
    other_admin = principal_with("project_admin", obj=other_project)
    secret_services.secret_create(principal=other_admin, project_id=other_project.id, name="api-key", path="/prod")


def test_moving_a_secret_by_path(admin, project, new_secret):
    secret = new_secret("token", b"v1", path="/old")
    moved = secret_services.secret_update(principal=admin, secret_id=secret.id, path="/new/place")
    assert moved.path == "/new/place"
    by_path = access_services.secret_version_access_by_path(
        principal=admin, project_id=project.id, secret_path="/new/place", secret_name="token", revision="1"
    )
    assert by_path.data == b"v1"
    with pytest.raises(ObjectNotFound):
        access_services.secret_version_access_by_path(
            principal=admin, project_id=project.id, secret_path="/old", secret_name="token", revision="1"
        )
    new_secret("token", path="/taken")
    with pytest.raises(Conflict):
        secret_services.secret_update(principal=admin, secret_id=secret.id, path="/taken")
    with pytest.raises(InvalidArgument):
        secret_services.secret_update(principal=admin, secret_id=secret.id, path="relative")
    assert Secret.objects.get(id=secret.id).path == "/new/place"


def test_update_changes_only_the_given_fields(admin, new_secret):
    secret = new_secret("s", b"one", tags=["a"], description="first")
    updated = secret_services.secret_update(principal=admin, secret_id=secret.id, description="second")
    assert updated.description == "second" and updated.tags == ["a"] and updated.name == "s"
    updated = secret_services.secret_update(principal=admin, secret_id=secret.id, name="renamed", tags=["b", "b", "c"])
    assert (updated.name, updated.tags, updated.version_count) == ("renamed", ["b", "c"], 1)


def test_updating_metadata_does_not_undo_a_concurrent_version(admin, new_secret, monkeypatch):
    """A metadata update saves only its own fields: a version added meanwhile keeps its count."""
    secret = new_secret("s", b"one")
    original = secret_services.secret_authorized

    def read_then_someone_adds_a_version(*args, **kwargs):
        found = original(*args, **kwargs)
        storage.secret_version_create(secret=Secret.objects.get(id=secret.id), data=b"two")  # concurrent writer
        return found

    monkeypatch.setattr(secret_services, "secret_authorized", read_then_someone_adds_a_version)
    secret_services.secret_update(principal=admin, secret_id=secret.id, description="edited")
    monkeypatch.undo()
    fresh = Secret.objects.get(id=secret.id)
    assert (fresh.version_count, fresh.description) == (2, "edited")
    version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"three")
    assert access(admin, secret) == b"three"


def test_updating_a_version_keeps_a_concurrent_dek_rotation_and_status(admin, new_secret, monkeypatch):
    """A version update saves only its own fields: a DEK rotated (old DEK destroyed) or a status
    changed meanwhile is kept, and the payload stays readable."""
    secret = new_secret("s", b"one")
    before = SecretVersion.objects.get(secret=secret)
    original = lookups.version_resolve

    def resolve_then_rotate_and_disable(*args, **kwargs):
        found = original(*args, **kwargs)
        deks_rotate(secret_id=secret.id)  # concurrent rotate_deks
        SecretVersion.objects.filter(id=found.id).update(status=VersionStatus.DISABLED)
        return found

    monkeypatch.setattr(version_services, "version_resolve", resolve_then_rotate_and_disable)
    expires = timezone.now() + timedelta(days=1)
    updated = version_services.secret_version_update(
        principal=admin,
        secret_id=secret.id,
        revision="1",
        description="d",
        expires_at=expires,
        ephemeral_action="disable",
    )
    monkeypatch.undo()
    assert updated.description == "d" and updated.expires_at == expires
    fresh = SecretVersion.objects.get(id=before.id)
    assert fresh.status == VersionStatus.DISABLED and fresh.dek_id != before.dek_id and not dek_exists(before.dek_id)
    assert (fresh.description, fresh.ephemeral_action) == ("d", "disable")
    version_services.secret_version_enable(principal=admin, secret_id=secret.id, revision="1")
    assert access(admin, secret, "1") == b"one"


# --- protection, deletion, restore and crypto-shredding -----------------------------------------
def test_a_protected_secret_cannot_be_deleted_but_its_versions_can(admin, new_secret):
    secret = new_secret("keep", b"one", b"two", protected=True)
    with pytest.raises(PreconditionFailed) as info:
        secret_services.secret_delete(principal=admin, secret_id=secret.id)
    assert info.value.status == 412 and info.value.type == "precondition_failed"
    version = version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    assert version.status == VersionStatus.SCHEDULED_FOR_DELETION
    secret_services.secret_unprotect(principal=admin, secret_id=secret.id)
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    assert secret_services.secret_get(principal=admin, secret_id=secret.id).deletion_requested_at is not None


def test_a_deleted_secret_is_restorable_within_seven_days(admin, project, new_secret):
    secret = new_secret("s", b"one", b"two")
    version_services.secret_version_disable(principal=admin, secret_id=secret.id, revision="1")
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    assert statuses(secret) == ["scheduled_for_deletion"] * 2
    assert secret_services.secret_get(principal=admin, secret_id=secret.id).name == "s"  # metadata readable
    with pytest.raises(PreconditionFailed):
        access(admin, secret, "2")  # payload not
    with pytest.raises(PreconditionFailed):
        secret_services.secret_delete(principal=admin, secret_id=secret.id)
    with pytest.raises(PreconditionFailed):
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"three")
    listed = selectors.secret_list(principal=admin, filters=SecretFilter(scheduled_for_deletion=True))
    assert [s.id for s in listed] == [secret.id]
    assert not selectors.secret_list(principal=admin).filter(id=secret.id).exists()
    # Six days later nothing is destroyed yet.
    counts = expiry_services.secret_versions_expire(
        principal=Principal.for_command(), now=timezone.now() + timedelta(days=6)
    )
    assert counts["versions_destroyed"] == counts["secrets_destroyed"] == 0
    restored = secret_services.secret_restore(principal=admin, secret_id=secret.id)
    assert restored.deletion_requested_at is None and statuses(secret) == ["disabled", "enabled"]
    assert access(admin, secret) == b"two"
    with pytest.raises(PreconditionFailed):
        secret_services.secret_restore(principal=admin, secret_id=secret.id)


def test_a_secret_deleted_more_than_seven_days_ago_is_crypto_shredded(admin, new_secret):
    secret = new_secret("s", b"one", b"two")
    dek_ids = list(SecretVersion.objects.filter(secret=secret).values_list("dek_id", flat=True))
    assert all(dek_exists(d) for d in dek_ids)
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    operator = Principal.for_command()
    later = timezone.now() + timedelta(days=7, seconds=1)
    assert expiry_services.secret_versions_expire(principal=operator, now=later, dry_run=True) == {
        "versions_disabled": 0,
        "versions_destroyed": 2,
        "secrets_destroyed": 1,
    }
    assert all(dek_exists(d) for d in dek_ids)  # a dry run changes nothing
    expiry_services.secret_versions_expire(principal=operator, now=later)
    assert not any(dek_exists(d) for d in dek_ids)  # the DEK rows are gone from the dek database
    assert not Secret.objects.filter(id=secret.id).exists()
    assert not SecretVersion.objects.filter(secret_id=secret.id).exists()
    assert expiry_services.secret_versions_expire(principal=operator, now=later) == {
        "versions_disabled": 0,
        "versions_destroyed": 0,
        "secrets_destroyed": 0,
    }  # idempotent
    destroyed = AuditEvent.objects.filter(
        action__in=["secret.destroy", "secret.version.destroy"], object_id=str(secret.id)
    )
    assert destroyed.count() == 3


def test_a_deleted_version_is_restorable_then_shredded_after_seven_days(admin, new_secret):
    secret = new_secret("s", b"one", b"two")
    first = SecretVersion.objects.get(secret=secret, revision=1)
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    with pytest.raises(PreconditionFailed):
        access(admin, secret, "1")
    restored = version_services.secret_version_restore(principal=admin, secret_id=secret.id, revision="1")
    assert restored.status == VersionStatus.ENABLED and access(admin, secret, "1") == b"one"
    version_services.secret_version_delete(principal=admin, secret_id=secret.id, revision="1")
    out = StringIO()
    backdate_deletions(days=8)  # a future --now is refused without --dry-run
    call_command("expire_secret_versions", "--yes", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "dry_run": False,
        "versions_disabled": 0,
        "versions_destroyed": 1,
        "secrets_destroyed": 0,
    }
    first.refresh_from_db()
    assert first.status == VersionStatus.DELETED and first.ciphertext is None and first.dek_id is None
    assert first.deleted_at is not None and not dek_exists(restored.dek_id)
    assert access(admin, secret, "2") == b"two"  # the rest of the secret is untouched
    with pytest.raises(PreconditionFailed):
        version_services.secret_version_restore(principal=admin, secret_id=secret.id, revision="1")


def test_expire_command_dry_run_text_and_errors(admin, new_secret):
    secret = new_secret("s", b"one")
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    out = StringIO()
    later = (timezone.now() + timedelta(days=8)).isoformat()
    call_command("expire_secret_versions", "--dry-run", "--now", later, stdout=out)
    assert out.getvalue().strip() == "would disable 0 expired version(s); would destroy 1 version(s) and 1 secret(s)"
    assert Secret.objects.filter(id=secret.id).exists()
    out = StringIO()
    call_command("expire_secret_versions", stdout=out)  # now: nothing is due yet
    assert out.getvalue().strip() == "disabled 0 expired version(s); destroyed 0 version(s) and 0 secret(s)"
    with pytest.raises(CommandError) as info:
        call_command("expire_secret_versions", "--now", "yesterday")
    assert "\n" not in str(info.value) and "ISO 8601" in str(info.value)
    assert AuditEvent.objects.filter(action="command.expire_secret_versions").count() == 2


def test_expire_refuses_a_future_now_and_destruction_without_confirmation(admin, new_secret):
    secret = new_secret("s", b"one")
    secret_services.secret_delete(principal=admin, secret_id=secret.id)
    later = (timezone.now() + timedelta(days=8)).isoformat()
    with pytest.raises(CommandError) as info:
        call_command("expire_secret_versions", "--now", later, "--yes")
    assert "\n" not in str(info.value) and str(info.value).startswith("--now is in the future")
    backdate_deletions(days=8)
    with pytest.raises(CommandError) as info:  # due now, but no terminal and no --yes
        call_command("expire_secret_versions")
    assert str(info.value) == (
        "refusing without confirmation: this would destroy 1 secret version(s) and 1 secret(s) for good "
        "(their DEKs are deleted: unrecoverable); pass --yes to confirm non-interactively"
    )
    assert Secret.objects.filter(id=secret.id).exists()
    assert not AuditEvent.objects.filter(action__in=["secret.destroy", "secret.version.destroy"]).exists()
    call_command("expire_secret_versions", "--yes", stdout=StringIO())
    assert not Secret.objects.filter(id=secret.id).exists()


def backdate_deletions(*, days: int) -> None:
    """Move every scheduled deletion ``days`` into the past (instead of a future ``--now``)."""
    from django.db.models import F

    shift = timedelta(days=days)
    Secret.objects.filter(deletion_requested_at__isnull=False).update(
        deletion_requested_at=F("deletion_requested_at") - shift
    )
    SecretVersion.objects.filter(deletion_requested_at__isnull=False).update(
        deletion_requested_at=F("deletion_requested_at") - shift
    )


def test_only_operators_may_expire(admin):
    with pytest.raises(ObjectNotFound):
        expiry_services.secret_versions_expire(principal=admin)


# --- keys -------------------------------------------------------------------------------------
def test_a_secret_uses_the_project_default_key_or_a_named_key_of_its_project(admin, project, other_project):
    default = secret_services.secret_create(principal=admin, project_id=project.id, name="d")
    assert default.key_id == project.default_key_id
    key = key_create(principal=admin, project_id=project.id, name="customer-key")
    named = secret_services.secret_create(principal=admin, project_id=project.id, name="n", key_id=str(key.id))
    assert named.key_id == key.id
    version = version_services.secret_version_create(principal=admin, secret_id=named.id, data=b"under my key")
    assert Dek.objects.using("dek").get(id=version.dek_id).key_id == key.id
    for foreign in (other_project.default_key_id, "8a4c2a5e-0000-4000-8000-000000000000"):
        with pytest.raises(InvalidArgument) as info:
            secret_services.secret_create(principal=admin, project_id=project.id, name="f", key_id=str(foreign))
        assert info.value.field == "key_id"
    with pytest.raises(InvalidArgument):
        secret_services.secret_create(principal=admin, project_id=project.id, name="f", key_id="not-a-uuid")


def test_naming_a_key_takes_the_key_user_role(project, principal_with):
    writer = principal_with("secret_writer")
    key = key_create(principal=Principal.for_command(), project_id=project.id, name="k")
    with pytest.raises(InvalidArgument) as hidden:  # the writer cannot even see the key: as if it did not exist
        secret_services.secret_create(principal=writer, project_id=project.id, name="n", key_id=str(key.id))
    with pytest.raises(InvalidArgument) as missing:
        secret_services.secret_create(principal=writer, project_id=project.id, name="n", key_id=str(uuid.uuid4()))
    assert hidden.value.as_scaleway() == missing.value.as_scaleway()
    key_viewer = principal_with("auditor")  # sees keys
    role_grant(principal=Principal.for_command(), user=key_viewer.user, role="secret_writer", obj=project)
    key_viewer = Principal(user=key_viewer.user)
    with pytest.raises(PermissionDenied):  # sees the key (auditor) but may not use it
        secret_services.secret_create(principal=key_viewer, project_id=project.id, name="n", key_id=str(key.id))
    role_grant(principal=Principal.for_command(), user=key_viewer.user, role="key_user", obj=key)
    key_user = Principal(user=key_viewer.user)
    assert (
        secret_services.secret_create(principal=key_user, project_id=project.id, name="n", key_id=str(key.id)).key_id
        == key.id
    )
    secret_services.secret_create(principal=writer, project_id=project.id, name="m")


def test_a_disabled_key_stops_access_until_it_is_enabled_again(admin, project, new_secret):
    key = key_create(principal=admin, project_id=project.id, name="customer-key")
    secret = new_secret("s", b"one", key_id=str(key.id))
    assert access(admin, secret) == b"one"  # the DEK is now cached
    key_disable(principal=admin, key_id=key.id)
    with pytest.raises(KeyDisabled) as info:
        access(admin, secret)
    assert str(key.id) in str(info.value) and "disabled" in str(info.value)
    with pytest.raises(KeyDisabled):
        version_services.secret_version_create(principal=admin, secret_id=secret.id, data=b"two")
    assert secret_services.secret_get(principal=admin, secret_id=secret.id).name == "s"  # metadata still readable
    key_enable(principal=admin, key_id=key.id)
    assert access(admin, secret) == b"one"


# --- authorization and audit ------------------------------------------------------------------
def test_roles_decide_and_strangers_see_nothing(project, other_project, principal_with, new_secret):
    secret = new_secret("s", b"one")
    reader, writer = principal_with("secret_reader"), principal_with("secret_writer")
    stranger, foreign = principal_with(None), principal_with("project_admin", obj=other_project)
    auditor = principal_with("auditor")
    assert access(reader, secret) == b"one"
    with pytest.raises(PermissionDenied):
        version_services.secret_version_create(principal=reader, secret_id=secret.id, data=b"x")
    version_services.secret_version_create(principal=writer, secret_id=secret.id, data=b"two")
    with pytest.raises(PermissionDenied):
        access(writer, secret)
    with pytest.raises(PermissionDenied):
        secret_services.secret_delete(principal=writer, secret_id=secret.id)
    assert secret_services.secret_get(principal=auditor, secret_id=secret.id).id == secret.id
    with pytest.raises(PermissionDenied):
        access(auditor, secret)
    for nobody in (stranger, foreign):
        for call in (
            lambda p: secret_services.secret_get(principal=p, secret_id=secret.id),
            lambda p: access(p, secret),
            lambda p: version_services.secret_version_list(principal=p, secret_id=secret.id),
            lambda p: secret_services.secret_delete(principal=p, secret_id=secret.id),
            lambda p: secret_services.secret_create(principal=p, project_id=project.id, name="intruder"),
            lambda p: access_services.secret_version_access_by_path(
                principal=p, project_id=project.id, secret_path="/", secret_name="s", revision="1"
            ),
        ):
            with pytest.raises(ObjectNotFound):
                call(nobody)
        assert list(selectors.secret_list(principal=nobody)) == [] or all(
            s.project_id == other_project.id for s in selectors.secret_list(principal=nobody)
        )
    grant_secret_only = principal_with("secret_reader", obj=secret)
    assert access(grant_secret_only, secret) == b"two"
    assert [s.id for s in selectors.secret_list(principal=grant_secret_only)] == [secret.id]


def test_a_secret_in_another_region_is_not_found(admin, new_secret):
    secret = new_secret("s", b"one", region="nl-ams")
    assert secret_services.secret_get(principal=admin, secret_id=secret.id, region="nl-ams").region == "nl-ams"
    with pytest.raises(ObjectNotFound):
        secret_services.secret_get(principal=admin, secret_id=secret.id, region="fr-par")


def test_reads_changes_and_denials_are_audited_without_payloads(admin, project, principal_with, new_secret):
    payload = b"correct horse battery staple"
    start = AuditEvent.objects.count()
    secret = new_secret("audited", payload)
    assert access(admin, secret) == payload
    secret_services.secret_get(principal=admin, secret_id=secret.id)  # metadata reads are not audited
    stranger, reader = principal_with(None, name="stranger"), principal_with("secret_reader", name="reader")
    with pytest.raises(ObjectNotFound):
        access(stranger, secret)
    with pytest.raises(PermissionDenied):
        version_services.secret_version_create(principal=reader, secret_id=secret.id, data=payload)
    version_services.secret_version_disable(principal=admin, secret_id=secret.id, revision="1")
    events = list(AuditEvent.objects.filter(object_id=str(secret.id)).order_by("seq"))
    assert [(e.action, e.outcome, e.actor) for e in events] == [
        ("secret.create", "allowed", "owner"),
        ("secret.version.create", "allowed", "owner"),
        ("secret.version.access", "allowed", "owner"),
        ("secret.version.access", "denied", "stranger"),
        ("secret.version.create", "denied", "reader"),
        ("secret.version.disable", "allowed", "owner"),
    ]
    assert events[2].detail["revision"] == 1 and events[2].project_id == str(project.id)
    everything = json.dumps(list(AuditEvent.objects.values()[start:]), default=str)
    for leaked in (payload.decode(), base64.b64encode(payload).decode(), payload.hex()):
        assert leaked not in everything


def test_tag_filter_matches_whole_tags_exactly_on_every_engine(admin, new_secret):
    """Tags match as whole, case-sensitive elements (SQLite included), all of them required;
    quotes and SQL-looking tags are data, not syntax."""
    web = new_secret("web", b"1", tags=["prod", "eu", 'say "hi"'])
    new_secret("db", b"2", tags=["Prod", "production", "eu"])
    odd = new_secret("odd", b"3", tags=["x' OR '1'='1"])

    def names(*tags: str) -> list[str]:
        listed = selectors.secret_list(principal=admin, filters=SecretFilter(tags=tags))
        return sorted(s.name for s in listed)

    assert names("prod") == ["web"]
    assert names("Prod") == ["db"]
    assert names("eu") == ["db", "web"]
    assert names("prod", "eu") == ["web"]
    assert names("prod", "production") == []
    assert names('say "hi"') == ["web"] and names("hi") == []
    assert names("x' OR '1'='1") == ["odd"] and names("x") == []
    assert {web.id, odd.id} <= {s.id for s in selectors.secret_list(principal=admin)}
