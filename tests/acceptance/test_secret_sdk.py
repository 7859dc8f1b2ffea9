"""Acceptance: every SecretV1Beta1API method through the official Scaleway SDK, against a live server.

The server is the real thing (gunicorn, two workers, fresh data directory; fresh
PostgreSQL databases with ``HKMS_TEST_POSTGRES=1``); the application only points the
SDK's ``api_url`` at it.  Every returned object is checked field by field.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from scaleway.secret.v1beta1 import SecretV1Beta1API
from scaleway.secret.v1beta1.types import (
    BrowseSecretsRequestOrderBy,
    EphemeralPolicy,
    EphemeralPolicyAction,
    EphemeralProperties,
    ListSecretsRequestOrderBy,
    Product,
    Secret,
    SecretStatus,
    SecretType,
    SecretVersion,
    SecretVersionStatus,
)
from scaleway_core.api import ScalewayException

from tests.live import sdk_client

pytestmark = pytest.mark.slow

CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVGb3JUZXN0czAKBggqhkjOPQQDAjAP\n"
    "-----END CERTIFICATE-----\n"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def error_of(call) -> tuple[int, dict]:
    with pytest.raises(ScalewayException) as info:
        call()
    return int(info.value.status_code or 0), info.value.response.json()


def recent(moment: datetime | None) -> bool:
    return moment is not None and abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


@pytest.fixture(scope="module")
def credentials(hkms_server):
    return hkms_server.create_api_key(
        "--user", "app", "--create-user", "--create-project", "acme", "--role", "project_admin"
    )


@pytest.fixture(scope="module")
def api(hkms_server, credentials):
    return SecretV1Beta1API(sdk_client(hkms_server, credentials))


@pytest.fixture(scope="module")
def default_key_id(hkms_server, credentials):
    from scaleway.key_manager.v1alpha1 import KeyManagerV1Alpha1API

    keys = KeyManagerV1Alpha1API(sdk_client(hkms_server, credentials))
    default = [k for k in keys.list_keys_all(scheduled_for_deletion=False) if k.name == "acme-default"]
    assert len(default) == 1
    return default[0].id


def assert_secret(secret: Secret, credentials, **expected) -> None:
    """Every field of a Secret: the defaults of a plain secret unless ``expected`` says otherwise."""
    fields = {
        "project_id": credentials["project_id"],
        "status": SecretStatus.READY,
        "tags": [],
        "version_count": 0,
        "managed": False,
        "protected": False,
        "type_": SecretType.OPAQUE,
        "path": "/",
        "used_by": [],
        "region": "fr-par",
        "description": "",
        "ephemeral_policy": None,
        "deletion_requested_at": None,
        **expected,
    }
    uuid.UUID(secret.id)
    for name, value in fields.items():
        assert getattr(secret, name) == value, name
    assert recent(secret.created_at) and recent(secret.updated_at)
    assert secret.updated_at >= secret.created_at


def assert_version(version: SecretVersion, secret_id: str, revision: int, **expected) -> None:
    fields = {
        "revision": revision,
        "secret_id": secret_id,
        "status": SecretVersionStatus.ENABLED,
        "latest": True,
        "region": "fr-par",
        "description": "",
        "deleted_at": None,
        "ephemeral_properties": None,
        "deletion_requested_at": None,
        **expected,
    }
    for name, value in fields.items():
        assert getattr(version, name) == value, name
    assert recent(version.created_at) and recent(version.updated_at)


def test_create_get_update_secret(api, credentials, default_key_id):
    created = api.create_secret(
        name="db-password",
        protected=False,
        tags=["prod", "db"],
        description="primary database",
        path="/apps/web",
    )
    assert_secret(
        created,
        credentials,
        name="db-password",
        tags=["prod", "db"],
        description="primary database",
        path="/apps/web",
        key_id=default_key_id,
    )
    assert api.get_secret(secret_id=created.id) == created

    updated = api.update_secret(
        secret_id=created.id, name="web-db", tags=["prod"], description="moved", path="/apps/api"
    )
    assert_secret(
        updated, credentials, name="web-db", tags=["prod"], description="moved", path="/apps/api", key_id=default_key_id
    )
    assert updated.id == created.id and updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert api.get_secret(secret_id=created.id) == updated


def test_versions_revisions_and_access(api, credentials):
    secret = api.create_secret(name="api-token", protected=False)
    first = api.create_secret_version(
        secret_id=secret.id, data=b64(b"token-1"), description="first", data_crc32=zlib.crc32(b"token-1")
    )
    assert_version(first, secret.id, 1, description="first")
    second = api.create_secret_version(secret_id=secret.id, data=b64(b"token-2"))
    assert_version(second, secret.id, 2)
    assert api.get_secret(secret_id=secret.id).version_count == 2
    assert api.get_secret_version(secret_id=secret.id, revision="1").latest is False

    accessed = api.access_secret_version(secret_id=secret.id, revision="latest")
    assert (accessed.secret_id, accessed.revision, unb64(accessed.data), accessed.type_, accessed.data_crc32) == (
        secret.id,
        2,
        b"token-2",
        SecretType.OPAQUE,
        zlib.crc32(b"token-2"),
    )
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="1").data) == b"token-1"

    # latest_enabled skips a disabled newest revision.
    disabled = api.disable_secret_version(secret_id=secret.id, revision="2")
    assert_version(disabled, secret.id, 2, status=SecretVersionStatus.DISABLED)
    assert api.access_secret_version(secret_id=secret.id, revision="latest_enabled").revision == 1
    assert api.get_secret_version(secret_id=secret.id, revision="latest_enabled").revision == 1
    status, body = error_of(lambda: api.access_secret_version(secret_id=secret.id, revision="latest"))
    assert status == 412 and body["type"] == "precondition_failed"
    enabled = api.enable_secret_version(secret_id=secret.id, revision="2")
    assert_version(enabled, secret.id, 2)

    # disable_previous: only the new revision stays enabled.
    third = api.create_secret_version(secret_id=secret.id, data=b64(b"token-3"), disable_previous=True)
    assert_version(third, secret.id, 3)
    statuses = {v.revision: v.status for v in api.list_secret_versions(secret_id=secret.id).versions}
    assert statuses == {1: "disabled", 2: "disabled", 3: "enabled"}

    listed = api.list_secret_versions(secret_id=secret.id, page=1, page_size=2)
    assert listed.total_count == 3 and [v.revision for v in listed.versions] == [1, 2]
    assert [v.latest for v in listed.versions] == [False, False]
    only_disabled = api.list_secret_versions(secret_id=secret.id, status=[SecretVersionStatus.DISABLED])
    assert only_disabled.total_count == 2 and {v.revision for v in only_disabled.versions} == {1, 2}
    every = api.list_secret_versions_all(secret_id=secret.id, page_size=1)
    assert [v.revision for v in every] == [1, 2, 3]
    assert_version(every[2], secret.id, 3)

    updated = api.update_secret_version(secret_id=secret.id, revision="3", description="rotated by CI")
    assert_version(updated, secret.id, 3, description="rotated by CI")


def test_access_by_path(api, credentials):
    secret = api.create_secret(name="smtp", protected=False, path="/apps/mail", type_=SecretType.KEY_VALUE)
    payload = json.dumps({"user": "mailer", "password": "s3cret"}).encode()
    api.create_secret_version(secret_id=secret.id, data=b64(payload))
    accessed = api.access_secret_version_by_path(
        secret_path="/apps/mail", secret_name="smtp", revision="latest", project_id=credentials["project_id"]
    )
    assert (accessed.secret_id, accessed.revision, accessed.type_) == (secret.id, 1, SecretType.KEY_VALUE)
    assert json.loads(unb64(accessed.data)) == {"user": "mailer", "password": "s3cret"}
    assert accessed.data_crc32 == zlib.crc32(payload)
    status, body = error_of(
        lambda: api.access_secret_version_by_path(secret_path="/apps", secret_name="smtp", revision="latest")
    )
    assert status == 404 and body["type"] == "not_found"


def test_typed_secrets_validate_their_payloads(api):
    cert = api.create_secret(name="tls", protected=False, type_=SecretType.CERTIFICATE)
    assert cert.type_ == SecretType.CERTIFICATE
    assert api.create_secret_version(secret_id=cert.id, data=b64(CERTIFICATE.encode())).revision == 1
    status, body = error_of(lambda: api.create_secret_version(secret_id=cert.id, data=b64(b"not a pem")))
    assert status == 400 and body["type"] == "invalid_arguments"
    basic = api.create_secret(name="basic", protected=False, type_=SecretType.BASIC_CREDENTIALS)
    status, _ = error_of(lambda: api.create_secret_version(secret_id=basic.id, data=b64(b'{"username": "u"}')))
    assert status == 400
    good = b'{"username": "u", "password": "p"}'
    assert api.create_secret_version(secret_id=basic.id, data=b64(good)).revision == 1
    status, _ = error_of(
        lambda: api.create_secret_version(secret_id=basic.id, data=b64(b"x"), data_crc32=zlib.crc32(b"y"))
    )
    assert status == 400
    status, _ = error_of(lambda: api.create_secret_version(secret_id=basic.id, data=b64(b"x" * (64 * 1024 + 1))))
    assert status in (400, 413)


def test_list_filters_order_and_paging(api, credentials):
    for name in ("list-b", "list-a", "list-c"):
        api.create_secret(name=name, protected=False, tags=["listing", name], path="/listing")
    listed = api.list_secrets(
        scheduled_for_deletion=False, tags=["listing"], order_by=ListSecretsRequestOrderBy.NAME_ASC, page=1, page_size=2
    )
    assert listed.total_count == 3 and [s.name for s in listed.secrets] == ["list-a", "list-b"]
    assert all(s.path == "/listing" and s.project_id == credentials["project_id"] for s in listed.secrets)
    page2 = api.list_secrets(
        scheduled_for_deletion=False, tags=["listing"], order_by=ListSecretsRequestOrderBy.NAME_ASC, page=2, page_size=2
    )
    assert [s.name for s in page2.secrets] == ["list-c"] and page2.total_count == 3
    names = [
        s.name
        for s in api.list_secrets_all(
            scheduled_for_deletion=False, path="/listing", page_size=1, order_by=ListSecretsRequestOrderBy.NAME_DESC
        )
    ]
    assert names == ["list-c", "list-b", "list-a"]
    assert [s.name for s in api.list_secrets(scheduled_for_deletion=False, name="list-b").secrets] == ["list-b"]
    cert = api.create_secret(name="list-cert", protected=False, path="/listing/certs", type_=SecretType.CERTIFICATE)
    typed = api.list_secrets(
        scheduled_for_deletion=False,
        project_id=credentials["project_id"],
        path="/listing/certs",
        type_=SecretType.CERTIFICATE,
    )
    assert [s.id for s in typed.secrets] == [cert.id] and typed.total_count == 1
    assert api.list_secrets(scheduled_for_deletion=False, path="/listing", type_=SecretType.CERTIFICATE).secrets == []
    brief = api.create_secret(
        name="list-ephemeral",
        protected=False,
        path="/listing",
        ephemeral_policy=EphemeralPolicy(action=EphemeralPolicyAction.DISABLE, time_to_live="3600s"),
    )
    assert [s.id for s in api.list_secrets(scheduled_for_deletion=False, path="/listing", ephemeral=True).secrets] == [
        brief.id
    ]
    assert brief.id not in {s.id for s in api.list_secrets_all(scheduled_for_deletion=False, ephemeral=False)}
    other_org = api.list_secrets(
        scheduled_for_deletion=False, organization_id=str(uuid.uuid4()), project_id=credentials["project_id"]
    )
    assert other_org.total_count == 0 and other_org.secrets == []


def test_browse_tags_and_types(api, credentials):
    api.create_secret(name="root-level", protected=False, path="/browse", tags=["browse"])
    api.create_secret(name="deep", protected=False, path="/browse/team/one", tags=["browse", "team-one"])
    api.create_secret(name="cert", protected=False, path="/browse/team", type_=SecretType.CERTIFICATE)
    top = api.browse_secrets(prefix="/browse", order_by=BrowseSecretsRequestOrderBy.NAME_ASC)
    assert top.current_path == "/browse" and top.total_count == 2
    folder, secret = top.items
    assert (folder.name, folder.secret) == ("team", None) and folder.folder is not None
    assert recent(folder.created_at) and recent(folder.updated_at)
    assert secret.name == "root-level" and secret.folder is None
    assert (secret.secret.tags, secret.secret.version_count, secret.secret.protected, secret.secret.type_) == (
        ["browse"],
        0,
        False,
        SecretType.OPAQUE,
    )
    uuid.UUID(secret.secret.id)
    assert secret.secret.ephemeral_policy is None
    team = api.browse_secrets(prefix="/browse/team/")
    assert team.current_path == "/browse/team" and [i.name for i in team.items] == ["one", "cert"]
    assert api.browse_secrets(prefix="/browse/team", type_=SecretType.CERTIFICATE).total_count == 1
    paged = api.browse_secrets(prefix="/browse", page=2, page_size=1)
    assert paged.total_count == 2 and len(paged.items) == 1

    tags = api.list_tags()
    assert {"browse", "team-one"} <= set(tags.tags) and tags.total_count == len(tags.tags)  # its own tags only
    assert tags.tags == sorted(tags.tags)
    assert api.list_tags_all(page_size=1) == tags.tags
    first = api.list_tags(page=1, page_size=1)
    assert first.total_count == tags.total_count and first.tags == tags.tags[:1]
    types = api.list_secret_types(project_id=credentials["project_id"])
    assert {SecretType.OPAQUE, SecretType.CERTIFICATE} <= set(types.types) and types.total_count == len(types.types)
    assert api.list_secret_types_all(page_size=1) == types.types


def test_protect_owner_delete_and_restore(api, hkms_server, credentials):
    secret = api.create_secret(name="protected-one", protected=True)
    api.create_secret_version(secret_id=secret.id, data=b64(b"v1"))
    api.create_secret_version(secret_id=secret.id, data=b64(b"v2"))
    status, body = error_of(lambda: api.delete_secret(secret_id=secret.id))
    assert status == 412 and body["type"] == "precondition_failed"
    # A protected secret's versions can still be deleted (scheduled) and restored.
    api.delete_secret_version(secret_id=secret.id, revision="1")
    scheduled = api.get_secret_version(secret_id=secret.id, revision="1")
    assert_version(
        scheduled,
        secret.id,
        1,
        status=SecretVersionStatus.SCHEDULED_FOR_DELETION,
        latest=False,
        deletion_requested_at=scheduled.deletion_requested_at,
    )
    assert recent(scheduled.deletion_requested_at)
    status, _ = error_of(lambda: api.access_secret_version(secret_id=secret.id, revision="1"))
    assert status == 412
    restored = api.restore_secret_version(secret_id=secret.id, revision="1")
    assert_version(restored, secret.id, 1, latest=False)
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="1").data) == b"v1"

    assert api.unprotect_secret(secret_id=secret.id).protected is False
    assert api.protect_secret(secret_id=secret.id).protected is True
    unprotected = api.unprotect_secret(secret_id=secret.id)
    assert_secret(unprotected, credentials, name="protected-one", version_count=2, key_id=secret.key_id)

    assert api.add_secret_owner(secret_id=secret.id, product=Product.EDGE_SERVICES) is None
    owned = api.get_secret(secret_id=secret.id)
    assert owned.used_by == [Product.EDGE_SERVICES] and owned.managed is True

    assert api.delete_secret(secret_id=secret.id) is None
    gone = api.get_secret(secret_id=secret.id)
    assert recent(gone.deletion_requested_at)
    assert [v.status for v in api.list_secret_versions(secret_id=secret.id).versions] == [
        "scheduled_for_deletion",
        "scheduled_for_deletion",
    ]
    assert secret.id in {s.id for s in api.list_secrets(scheduled_for_deletion=True).secrets}
    assert secret.id not in {s.id for s in api.list_secrets_all(scheduled_for_deletion=False)}
    status, _ = error_of(lambda: api.access_secret_version(secret_id=secret.id, revision="latest"))
    assert status == 412
    back = api.restore_secret(secret_id=secret.id)
    assert back.deletion_requested_at is None and back.version_count == 2
    assert [v.status for v in api.list_secret_versions(secret_id=secret.id).versions] == ["enabled", "enabled"]
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="latest").data) == b"v2"

    # After the 7-day window, expire_secret_versions destroys it for good (its DEKs first).
    api.delete_secret(secret_id=secret.id)
    backdate_deletions(hkms_server, days=8)  # a future --now is refused without --dry-run
    report = json.loads(hkms_server.manage("expire_secret_versions", "--yes", "--json"))
    assert report["secrets_destroyed"] >= 1
    status, body = error_of(lambda: api.get_secret(secret_id=secret.id))
    assert status == 404 and body["type"] == "not_found" and body["resource"] == "secret"
    status, _ = error_of(lambda: api.restore_secret(secret_id=secret.id))
    assert status == 404


def test_ephemeral_policies(api, credentials):
    once = api.create_secret(
        name="one-time",
        protected=False,
        ephemeral_policy=EphemeralPolicy(action=EphemeralPolicyAction.DISABLE, expires_once_accessed=True),
    )
    assert once.ephemeral_policy == EphemeralPolicy(
        action=EphemeralPolicyAction.DISABLE, time_to_live=None, expires_once_accessed=True
    )
    version = api.create_secret_version(secret_id=once.id, data=b64(b"read me once"))
    assert version.ephemeral_properties == EphemeralProperties(
        action=EphemeralPolicyAction.DISABLE, expires_at=None, expires_once_accessed=True
    )
    assert unb64(api.access_secret_version(secret_id=once.id, revision="1").data) == b"read me once"
    status, body = error_of(lambda: api.access_secret_version(secret_id=once.id, revision="1"))
    assert status == 410 and body["type"] == "resource_expired"
    assert api.get_secret_version(secret_id=once.id, revision="1").status == SecretVersionStatus.DISABLED
    assert api.list_secrets(scheduled_for_deletion=False, ephemeral=True).total_count >= 1

    short = api.create_secret(
        name="short-lived",
        protected=False,
        ephemeral_policy=EphemeralPolicy(action=EphemeralPolicyAction.DELETE, time_to_live="1s"),
    )
    assert short.ephemeral_policy.time_to_live == "1s" and short.ephemeral_policy.action == "delete"
    created = api.create_secret_version(secret_id=short.id, data=b64(b"brief"))
    assert created.ephemeral_properties.action == "delete" and created.ephemeral_properties.expires_at is not None
    assert created.ephemeral_properties.expires_at - created.created_at <= timedelta(seconds=2)
    time.sleep(max(0.0, (created.ephemeral_properties.expires_at - datetime.now(UTC)).total_seconds()) + 0.3)
    status, body = error_of(lambda: api.access_secret_version(secret_id=short.id, revision="1"))
    assert status == 410 and body["type"] == "resource_expired"

    # A version's own ephemeral properties can be edited.
    plain = api.create_secret(name="made-ephemeral", protected=False)
    api.create_secret_version(secret_id=plain.id, data=b64(b"x"))
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    edited = api.update_secret_version(
        secret_id=plain.id,
        revision="latest",
        ephemeral_properties=EphemeralProperties(action=EphemeralPolicyAction.DISABLE, expires_at=until),
    )
    assert edited.ephemeral_properties == EphemeralProperties(
        action=EphemeralPolicyAction.DISABLE, expires_at=until, expires_once_accessed=False
    )
    # update_secret can give a secret an ephemeral policy.
    policy = EphemeralPolicy(action=EphemeralPolicyAction.DISABLE, time_to_live="86400s")
    assert api.update_secret(secret_id=plain.id, ephemeral_policy=policy).ephemeral_policy == EphemeralPolicy(
        action=EphemeralPolicyAction.DISABLE, time_to_live="86400s", expires_once_accessed=False
    )


def test_delete_version_is_scheduled_then_shredded(api, hkms_server):
    secret = api.create_secret(name="shred-me", protected=False)
    api.create_secret_version(secret_id=secret.id, data=b64(b"old"))
    api.create_secret_version(secret_id=secret.id, data=b64(b"new"))
    assert api.delete_secret_version(secret_id=secret.id, revision="1") is None
    backdate_deletions(hkms_server, days=8)
    hkms_server.manage("expire_secret_versions", "--yes")
    destroyed = api.get_secret_version(secret_id=secret.id, revision="1")
    assert destroyed.status == SecretVersionStatus.DELETED and recent(destroyed.deleted_at)
    status, _ = error_of(lambda: api.restore_secret_version(secret_id=secret.id, revision="1"))
    assert status == 412
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="latest").data) == b"new"


def test_key_id_names_a_key_of_the_project(api, hkms_server, credentials, default_key_id):
    from scaleway.key_manager.v1alpha1 import KeyManagerV1Alpha1API

    keys = KeyManagerV1Alpha1API(sdk_client(hkms_server, credentials))
    key = keys.create_key(unprotected=True, name="secrets-kek")
    secret = api.create_secret(name="customer-kek", protected=False, key_id=key.id)
    assert secret.key_id == key.id and secret.key_id != default_key_id
    api.create_secret_version(secret_id=secret.id, data=b64(b"wrapped by my key"))
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="1").data) == b"wrapped by my key"
    status, _ = error_of(lambda: api.create_secret(name="bad-kek", protected=False, key_id=str(uuid.uuid4())))
    assert status == 400


def test_errors_reach_the_sdk_in_the_scaleway_shape(api, hkms_server, credentials):
    secret = api.create_secret(name="errors", protected=False)
    status, body = error_of(lambda: api.get_secret(secret_id=str(uuid.uuid4())))
    assert status == 404 and body["type"] == "not_found" and body["resource"] == "secret"
    status, body = error_of(lambda: api.get_secret(secret_id=secret.id, region="nl-ams"))
    assert status == 404
    status, body = error_of(lambda: api.get_secret(secret_id=secret.id, region="mars-1"))
    assert status == 400 and body["type"] == "invalid_arguments"
    status, body = error_of(lambda: api.create_secret(name="errors", protected=False))
    assert status == 409 and body["type"] == "conflict"
    status, body = error_of(lambda: api.create_secret(name="bad path", protected=False, path="/a//b c"))
    assert status == 400
    status, body = error_of(lambda: api.create_secret_version(secret_id=secret.id, data="***not base64***"))
    assert status == 400 and body["type"] == "invalid_arguments"
    status, body = error_of(lambda: api.get_secret_version(secret_id=secret.id, revision="oldest"))
    assert status == 400
    status, body = error_of(lambda: api.list_secrets(scheduled_for_deletion=False, page_size=1000))
    assert status == 400
    stranger = SecretV1Beta1API(
        sdk_client(
            hkms_server,
            hkms_server.create_api_key(
                "--user", "stranger", "--create-user", "--create-project", "globex", "--role", "project_admin"
            ),
        )
    )
    status, body = error_of(lambda: stranger.get_secret(secret_id=secret.id))
    assert status == 404 and body["type"] == "not_found"
    assert secret.id not in {s.id for s in stranger.list_secrets_all(scheduled_for_deletion=False)}
    bad_token = SecretV1Beta1API(sdk_client(hkms_server, {**credentials, "secret_key": str(uuid.uuid4())}))
    status, body = error_of(lambda: bad_token.get_secret(secret_id=secret.id))
    assert status == 401 and body["type"] == "denied_authentication"


def test_a_reader_of_another_project_gets_404_on_every_call(api, hkms_server, credentials):
    secret = api.create_secret(name="acme-only", protected=False, path="/private")
    api.create_secret_version(secret_id=secret.id, data=b64(b"acme eyes only"))
    reader = SecretV1Beta1API(
        sdk_client(
            hkms_server,
            hkms_server.create_api_key(
                "--user", "globex-reader", "--create-user", "--create-project", "globex-r", "--role", "secret_reader"
            ),
        )
    )
    calls = {
        "get_secret": lambda: reader.get_secret(secret_id=secret.id),
        "access_secret_version": lambda: reader.access_secret_version(secret_id=secret.id, revision="latest"),
        "access_by_path": lambda: reader.access_secret_version_by_path(
            secret_path="/private", secret_name="acme-only", revision="1", project_id=credentials["project_id"]
        ),
        "get_secret_version": lambda: reader.get_secret_version(secret_id=secret.id, revision="1"),
        "list_secret_versions": lambda: reader.list_secret_versions(secret_id=secret.id),
        "update_secret": lambda: reader.update_secret(secret_id=secret.id, name="stolen"),
        "delete_secret": lambda: reader.delete_secret(secret_id=secret.id),
        "create_secret_version": lambda: reader.create_secret_version(secret_id=secret.id, data=b64(b"x")),
        "create_secret": lambda: reader.create_secret(
            name="intruder", protected=False, project_id=credentials["project_id"]
        ),
    }
    for name, call in calls.items():
        status, body = error_of(call)
        assert (status, body["type"]) == (404, "not_found"), name
    assert reader.list_secrets(scheduled_for_deletion=False, project_id=credentials["project_id"]).total_count == 0
    assert reader.list_tags(project_id=credentials["project_id"]).tags == []
    assert api.get_secret(secret_id=secret.id).name == "acme-only"
    assert unb64(api.access_secret_version(secret_id=secret.id, revision="1").data) == b"acme eyes only"


def test_every_sdk_method_is_exercised_here():
    methods = {
        name
        for name, _ in inspect.getmembers(SecretV1Beta1API, inspect.isfunction)
        if not name.startswith("_") and name in vars(SecretV1Beta1API)
    }
    used = set(
        re.findall(r"\bapi\.(\w+)\(", inspect.getsource(inspect.getmodule(test_every_sdk_method_is_exercised_here)))
    )
    assert len(methods) == 26 and methods - used == set()


def backdate_deletions(server, *, days: int) -> None:
    """Move the server's scheduled deletions ``days`` into the past (what waiting would do)."""
    code = (
        "from datetime import timedelta; from django.db.models import F; "
        "from secrets_app.models import Secret, SecretVersion; "
        f"shift = timedelta(days={days}); "
        "[m.objects.filter(deletion_requested_at__isnull=False).update("
        "deletion_requested_at=F('deletion_requested_at') - shift) for m in (Secret, SecretVersion)]"
    )
    server.manage("shell", "-c", code)
