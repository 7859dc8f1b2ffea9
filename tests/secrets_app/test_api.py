"""Secret Manager v1beta1 over HTTP (DRF APIClient, X-Auth-Token): the shapes the SDK unmarshals,
Scaleway error shapes and statuses, the edge cases of the issue, and query counts per database."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from scaleway.secret.v1beta1 import marshalling as m

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from keys_app.services import material
from keys_app.services.keys.lifecycle import key_disable, key_enable
from keys_app.services.keys.metadata import key_create
from secrets_app.models import Secret

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
BASE = "/secret-manager/v1beta1/regions/fr-par"
PEM_CERT = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydA==\n-----END CERTIFICATE-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client_for(project, role: str | None, name: str, obj=None) -> APIClient:
    operator = Principal.for_command()
    user = get_user_model().objects.create_user(name)
    if role:
        role_grant(principal=operator, user=user, role=role, obj=obj or project)
    issued = api_key_create(principal=operator, user=user, project=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def api(project):
    return client_for(project, "project_admin", "owner")


def send(api, method: str, path: str, body=None, base: str = BASE):
    data = body if isinstance(body, str | bytes) else json.dumps(body if body is not None else {})
    return getattr(api, method)(f"{base}{path}", data=data, content_type="application/json")


def create_secret(api, project, **body) -> dict:
    response = send(api, "post", "/secrets", {"name": "db-password", "project_id": str(project.id), **body})
    assert response.status_code == 200, response.content
    return response.json()


def add_version(api, secret_id: str, data: bytes, **body) -> dict:
    response = send(api, "post", f"/secrets/{secret_id}/versions", {"data": b64(data), **body})
    assert response.status_code == 200, response.content
    return response.json()


def read(api, secret_id: str, revision="latest_enabled"):
    return api.get(f"{BASE}/secrets/{secret_id}/versions/{revision}/access")


def payload_of(response) -> bytes:
    assert response.status_code == 200, response.content
    return base64.b64decode(response.json()["data"])


def error(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert "message" in body
    if type_ is not None:
        assert body.get("type") == type_, body
    return body


# --- shapes -----------------------------------------------------------------------------------
def test_secret_and_version_shapes_are_what_the_sdk_unmarshals(api, project):
    body = create_secret(
        api,
        project,
        name="orders-db",
        tags=["prod", "db"],
        description="orders",
        type="key_value",
        path="/apps/orders",
        protected=True,
        ephemeral_policy={"time_to_live": "3600s", "action": "disable"},
    )
    secret = m.unmarshal_Secret(body)
    assert uuid.UUID(secret.id) and secret.project_id == str(project.id) and secret.name == "orders-db"
    assert secret.status == "ready" and secret.tags == ["prod", "db"] and secret.version_count == 0
    assert secret.description == "orders" and secret.managed is False and secret.protected is True
    assert secret.type_ == "key_value" and secret.path == "/apps/orders" and secret.used_by == []
    assert secret.region == "fr-par" and secret.key_id == str(project.default_key_id)
    assert secret.deletion_requested_at is None and secret.created_at and body["created_at"].endswith("Z")
    assert secret.ephemeral_policy.time_to_live == "3600s" and secret.ephemeral_policy.action == "disable"
    assert secret.ephemeral_policy.expires_once_accessed is False
    assert api.get(f"{BASE}/secrets/{secret.id}").json() == body

    version_body = add_version(api, secret.id, b'{"user": "app"}', description="first")
    version = m.unmarshal_SecretVersion(version_body)
    assert (version.revision, version.secret_id, version.status, version.latest) == (1, secret.id, "enabled", True)
    assert version.description == "first" and version.region == "fr-par" and version.deleted_at is None
    assert version.deletion_requested_at is None and version.created_at
    assert version.ephemeral_properties.action == "disable" and version.ephemeral_properties.expires_at is not None
    assert version.ephemeral_properties.expires_once_accessed is False
    assert api.get(f"{BASE}/secrets/{secret.id}/versions/1").json() == version_body

    accessed = read(api, secret.id, "1")
    assert accessed["Cache-Control"] == "no-store"
    access = m.unmarshal_AccessSecretVersionResponse(accessed.json())
    assert (access.secret_id, access.revision, access.type_) == (secret.id, 1, "key_value")
    assert base64.b64decode(access.data) == b'{"user": "app"}' and access.data_crc32 == zlib.crc32(b'{"user": "app"}')
    listed = m.unmarshal_ListSecretVersionsResponse(api.get(f"{BASE}/secrets/{secret.id}/versions").json())
    assert listed.total_count == 1 and listed.versions[0].revision == 1


def test_update_moves_a_secret_and_access_by_path_follows(api, project):
    secret = create_secret(api, project, name="token", path="/old")
    add_version(api, secret["id"], b"v1")
    moved = send(api, "patch", f"/secrets/{secret['id']}", {"path": "/new/place", "tags": ["x"], "description": "d"})
    assert moved.status_code == 200 and moved.json()["path"] == "/new/place" and moved.json()["tags"] == ["x"]
    params = {"project_id": str(project.id), "secret_path": "/new/place", "secret_name": "token"}
    by_path = api.get(f"{BASE}/secrets-by-path/versions/latest/access", params)
    assert payload_of(by_path) == b"v1" and by_path.json()["secret_id"] == secret["id"]
    old = api.get(f"{BASE}/secrets-by-path/versions/latest/access", {**params, "secret_path": "/old"})
    error(old, 404, "not_found")
    create_secret(api, project, name="token", path="/taken")
    error(send(api, "patch", f"/secrets/{secret['id']}", {"path": "/taken"}), 409, "conflict")
    error(send(api, "patch", f"/secrets/{secret['id']}", {"path": "no-slash"}), 400, "invalid_arguments")
    error(send(api, "post", "/secrets", {"name": "token", "project_id": str(project.id), "path": "/taken"}), 409)


def test_list_filters_order_and_paging(api, project):
    a = create_secret(api, project, name="a", tags=["t1", "t2"], path="/x", type="opaque")
    b = create_secret(
        api,
        project,
        name="b",
        tags=["t2"],
        path="/x/y",
        type="certificate",
        ephemeral_policy={"expires_once_accessed": True, "action": "delete"},
    )
    c = create_secret(api, project, name="c", path="/", protected=True)

    def ids(**params):
        response = api.get(f"{BASE}/secrets", params)
        assert response.status_code == 200, response.content
        body = m.unmarshal_ListSecretsResponse(response.json())
        return [s.id for s in body.secrets], body.total_count

    assert ids() == ([a["id"], b["id"], c["id"]], 3)
    assert ids(project_id=str(project.id), organization_id=str(project.organization_id))[1] == 3
    assert ids(organization_id=str(uuid.uuid4())) == ([], 0)
    assert ids(tags="t2") == ([a["id"], b["id"]], 2)
    assert ids(tags=["t1", "t2"]) == ([a["id"]], 1)
    assert ids(name="b") == ([b["id"]], 1)
    assert ids(path="/x") == ([a["id"]], 1)
    assert ids(ephemeral="true") == ([b["id"]], 1)
    assert ids(ephemeral="False") == ([a["id"], c["id"]], 2)
    assert ids(type="certificate") == ([b["id"]], 1)
    assert ids(type="unknown_type")[1] == 3
    assert ids(order_by="name_desc")[0] == [c["id"], b["id"], a["id"]]
    assert ids(page=2, page_size=2) == ([c["id"]], 3)
    assert ids(page=5, page_size=100) == ([], 3)
    assert send(api, "delete", f"/secrets/{a['id']}").status_code == 204
    assert ids(scheduled_for_deletion="true") == ([a["id"]], 1)
    assert ids(scheduled_for_deletion="False")[1] == 2
    for bad in ({"order_by": "size"}, {"ephemeral": "maybe"}, {"type": "password"}, {"path": "x"}):
        error(api.get(f"{BASE}/secrets", bad), 400, "invalid_arguments")


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "-1"},
        {"page_size": "0"},
        {"page_size": "101"},
        {"page": "x"},
        {"page_size": "1.5"},
        {"page": "99999999999999999999999"},
        {"page": str(2**62), "page_size": "100"},
    ],
)
@pytest.mark.parametrize("path", ["/secrets", "/secrets/browse", "/tags", "/secret-types", "/secrets/{id}/versions"])
def test_paging_bounds_are_validation_errors(api, project, params, path):
    secret = create_secret(api, project)
    body = error(api.get(f"{BASE}{path.format(id=secret['id'])}", params), 400, "invalid_arguments")
    assert "page" in body["message"]


def test_paging_limits_are_accepted(api, project):
    create_secret(api, project)
    for params in ({"page": "1", "page_size": "1"}, {"page_size": "100"}, {"page": "1000", "page_size": "100"}):
        assert api.get(f"{BASE}/secrets", params).status_code == 200


def test_version_status_filters(api, project):
    secret = create_secret(api, project)
    for data in (b"1", b"2", b"3", b"4"):
        add_version(api, secret["id"], data)
    send(api, "post", f"/secrets/{secret['id']}/versions/2/disable")
    send(api, "delete", f"/secrets/{secret['id']}/versions/3")

    def revisions(*status):
        response = api.get(f"{BASE}/secrets/{secret['id']}/versions", {"status": list(status)} if status else {})
        assert response.status_code == 200, response.content
        return [v["revision"] for v in response.json()["versions"]], response.json()["total_count"]

    assert revisions() == ([1, 2, 3, 4], 4)
    assert revisions("enabled") == ([1, 4], 2)
    assert revisions("disabled") == ([2], 1)
    assert revisions("scheduled_for_deletion") == ([3], 1)
    assert revisions("enabled", "disabled") == ([1, 2, 4], 3)
    assert revisions("unknown_status") == ([1, 2, 3, 4], 4)
    assert revisions("deleted") == ([], 0)
    error(api.get(f"{BASE}/secrets/{secret['id']}/versions", {"status": "gone"}), 400, "invalid_arguments")
    page = api.get(f"{BASE}/secrets/{secret['id']}/versions", {"page": 2, "page_size": 3}).json()
    assert [v["revision"] for v in page["versions"]] == [4] and page["total_count"] == 4


def test_browse_tags_and_types(api, project):
    create_secret(api, project, name="root-secret", tags=["b"])
    create_secret(api, project, name="web", path="/apps/web", tags=["a", "b"], type="key_value")
    create_secret(api, project, name="db", path="/apps/db/primary", type="database_credentials")
    create_secret(api, project, name="api", path="/apps")
    top = m.unmarshal_BrowseSecretsResponse(api.get(f"{BASE}/secrets/browse", {"prefix": "/"}).json())
    assert top.current_path == "/" and top.total_count == 2
    assert [(i.name, i.folder is not None, i.secret is not None) for i in top.items] == [
        ("apps", True, False),
        ("root-secret", False, True),
    ]
    apps = m.unmarshal_BrowseSecretsResponse(
        api.get(f"{BASE}/secrets/browse", {"prefix": "/apps/", "project_id": str(project.id)}).json()
    )
    assert apps.current_path == "/apps" and [i.name for i in apps.items] == ["db", "web", "api"]
    assert apps.items[2].secret.version_count == 0 and apps.items[2].secret.type_ == "opaque"
    first = api.get(f"{BASE}/secrets/browse", {"prefix": "/apps", "page_size": 1}).json()
    assert [i["name"] for i in first["items"]] == ["db"] and first["total_count"] == 3
    error(api.get(f"{BASE}/secrets/browse", {"prefix": "apps"}), 400, "invalid_arguments")
    tags = m.unmarshal_ListTagsResponse(api.get(f"{BASE}/tags", {"project_id": str(project.id)}).json())
    assert tags.tags == ["a", "b"] and tags.total_count == 2
    types = m.unmarshal_ListSecretTypesResponse(api.get(f"{BASE}/secret-types").json())
    assert types.types == ["opaque", "key_value", "database_credentials"] and types.total_count == 3


def test_protect_owner_and_lifecycle_endpoints(api, project):
    secret = create_secret(api, project, protected=True)
    sid = secret["id"]
    body = error(send(api, "delete", f"/secrets/{sid}"), 412, "precondition_failed")
    assert "protected" in body["message"]
    assert send(api, "post", f"/secrets/{sid}/unprotect").json()["protected"] is False
    assert send(api, "post", f"/secrets/{sid}/protect").json()["protected"] is True
    assert send(api, "post", f"/secrets/{sid}/add-owner", {"product": "edge_services"}).status_code == 204
    owned = api.get(f"{BASE}/secrets/{sid}").json()
    assert owned["used_by"] == ["edge_services"] and owned["managed"] is True
    error(send(api, "post", f"/secrets/{sid}/add-owner", {"product": "unknown_product"}), 400, "invalid_arguments")
    send(api, "post", f"/secrets/{sid}/unprotect")
    add_version(api, sid, b"1")
    assert send(api, "delete", f"/secrets/{sid}").status_code == 204
    scheduled = api.get(f"{BASE}/secrets/{sid}").json()
    assert scheduled["deletion_requested_at"] is not None
    assert api.get(f"{BASE}/secrets/{sid}/versions/1").json()["status"] == "scheduled_for_deletion"
    error(read(api, sid, "1"), 412, "precondition_failed")
    error(send(api, "post", f"/secrets/{sid}/versions/1/restore"), 412, "precondition_failed")
    restored = send(api, "post", f"/secrets/{sid}/restore")
    assert restored.status_code == 200 and restored.json()["deletion_requested_at"] is None
    assert payload_of(read(api, sid, "1")) == b"1"
    error(send(api, "post", f"/secrets/{sid}/restore"), 412, "precondition_failed")


def test_version_lifecycle_endpoints(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    add_version(api, sid, b"two")
    disabled = send(api, "post", f"/secrets/{sid}/versions/latest/disable").json()
    assert disabled["revision"] == 2 and disabled["status"] == "disabled" and disabled["latest"] is True
    assert payload_of(read(api, sid)) == b"one"  # latest_enabled after disabling the newest
    error(read(api, sid, "latest"), 412, "precondition_failed")
    assert send(api, "post", f"/secrets/{sid}/versions/2/enable").json()["status"] == "enabled"
    patched = send(
        api,
        "patch",
        f"/secrets/{sid}/versions/1",
        {"description": "old", "ephemeral_properties": {"expires_once_accessed": True, "action": "disable"}},
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["description"] == "old" and patched.json()["latest"] is False
    assert patched.json()["ephemeral_properties"] == {
        "expires_at": None,
        "expires_once_accessed": True,
        "action": "disable",
    }
    assert send(api, "delete", f"/secrets/{sid}/versions/1").status_code == 204
    assert api.get(f"{BASE}/secrets/{sid}/versions/1").json()["status"] == "scheduled_for_deletion"
    error(send(api, "delete", f"/secrets/{sid}/versions/1"), 412, "precondition_failed")
    restored = send(api, "post", f"/secrets/{sid}/versions/1/restore").json()
    assert restored["status"] == "enabled" and restored["deletion_requested_at"] is None
    error(send(api, "post", f"/secrets/{sid}/versions/9/enable"), 404, "not_found")
    error(api.get(f"{BASE}/secrets/{sid}/versions/latest_disabled"), 400, "invalid_arguments")


# --- edge cases of the issue ------------------------------------------------------------------
def test_disable_previous(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    add_version(api, sid, b"two")
    add_version(api, sid, b"three", disable_previous=True)
    statuses = [v["status"] for v in api.get(f"{BASE}/secrets/{sid}/versions").json()["versions"]]
    assert statuses == ["disabled", "disabled", "enabled"]


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_expires_once_accessed_second_access_is_410(api, project, action):
    sid = create_secret(api, project, ephemeral_policy={"expires_once_accessed": True, "action": action})["id"]
    version = add_version(api, sid, b"burn after reading")
    assert version["ephemeral_properties"] == {"expires_at": None, "expires_once_accessed": True, "action": action}
    assert payload_of(read(api, sid, "1")) == b"burn after reading"
    body = error(read(api, sid, "1"), 410, "resource_expired")
    assert body["resource"] == "secret_version"
    expected = "deleted" if action == "delete" else "disabled"
    assert api.get(f"{BASE}/secrets/{sid}/versions/1").json()["status"] == expected


def test_time_to_live_expires_with_an_injected_clock(api, project, monkeypatch):
    sid = create_secret(api, project, ephemeral_policy={"time_to_live": "60s", "action": "delete"})["id"]
    version = add_version(api, sid, b"short")
    assert version["ephemeral_properties"]["expires_at"] is not None
    assert payload_of(read(api, sid, "1")) == b"short"
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=61))
    error(read(api, sid, "1"), 410, "resource_expired")


def test_crc_mismatch_is_a_validation_error(api, project):
    sid = create_secret(api, project)["id"]
    body = error(
        send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"abc"), "data_crc32": 1}), 400, "invalid_arguments"
    )
    assert body["details"][0]["argument_name"] == "data_crc32"
    good = add_version(api, sid, b"abc", data_crc32=zlib.crc32(b"abc"))
    assert read(api, sid, str(good["revision"])).json()["data_crc32"] == zlib.crc32(b"abc")
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"abc"), "data_crc32": -1}), 400)
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"abc"), "data_crc32": 2**32}), 400)


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("certificate", PEM_CERT, b"MIIB not pem"),
        ("key_value", b'{"a": "b"}', b'["a"]'),
        ("basic_credentials", b'{"username": "u", "password": "p"}', b'{"username": "u"}'),
        (
            "database_credentials",
            b'{"engine": "pg", "username": "u", "password": "p", "host": "h", "dbname": "d", "port": "5432"}',
            b'{"engine": "pg"}',
        ),
        (
            "ssh_key",
            json.dumps(
                {"ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"}
            ).encode(),
            b'{"ssh_private_key": "nope"}',
        ),
    ],
)
def test_wrong_type_shape_is_refused(api, project, type_, good, bad):
    sid = create_secret(api, project, type=type_)["id"]
    body = error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(bad)}), 400, "invalid_arguments")
    assert body["details"][0]["argument_name"] == "data"
    add_version(api, sid, good)
    assert read(api, sid).json()["type"] == type_


def test_oversized_payload_is_refused(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"x" * 65536)
    body = error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"x" * 65537)}), 400, "invalid_arguments")
    assert "65536" in body["message"]


@pytest.mark.parametrize("data", ["not base64!", "YWJ", "YW Jj", "", "===", 12, None, ["YQ=="]])
def test_bad_base64_is_a_validation_error(api, project, data):
    sid = create_secret(api, project)["id"]
    response = send(api, "post", f"/secrets/{sid}/versions", {"data": data})
    body = error(response, 400)
    assert body.get("type") == "invalid_arguments"


def test_unknown_region_is_a_clear_error(api, project):
    body = error(api.get("/secret-manager/v1beta1/regions/mars-1/secrets"), 400, "invalid_arguments")
    assert "mars-1" in body["message"] and "fr-par" in body["message"]
    error(
        send(
            api,
            "post",
            "/secrets",
            {"name": "n", "project_id": str(project.id)},
            base="/secret-manager/v1beta1/regions/xx",
        ),
        400,
        "invalid_arguments",
    )


def test_a_secret_is_served_only_in_its_region(api, project):
    sid = create_secret(api, project)["id"]
    error(api.get(f"/secret-manager/v1beta1/regions/nl-ams/secrets/{sid}"), 404, "not_found")
    ams = send(
        api,
        "post",
        "/secrets",
        {"name": "x", "project_id": str(project.id)},
        base="/secret-manager/v1beta1/regions/nl-ams",
    )
    assert ams.json()["region"] == "nl-ams"
    assert [s["name"] for s in api.get("/secret-manager/v1beta1/regions/nl-ams/secrets").json()["secrets"]] == ["x"]


@pytest.mark.parametrize("path", ["a", "/a//b", "/a b", "/..", "/" + "s" * 256, "/é"])
def test_path_rules(api, project, path):
    error(
        send(api, "post", "/secrets", {"name": "n", "project_id": str(project.id), "path": path}),
        400,
        "invalid_arguments",
    )


def test_restore_after_seven_days_is_too_late(api, project):
    from django.core.management import call_command

    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    assert send(api, "delete", f"/secrets/{sid}").status_code == 204
    Secret.objects.filter(id=sid).update(deletion_requested_at=timezone.now() - timedelta(days=7, minutes=1))
    call_command("expire_secret_versions", "--yes")
    error(send(api, "post", f"/secrets/{sid}/restore"), 404, "not_found")
    error(api.get(f"{BASE}/secrets/{sid}"), 404, "not_found")


def test_deleting_an_ephemeral_secret_is_immediate(api, project):
    sid = create_secret(api, project, ephemeral_policy={"time_to_live": "3600s", "action": "disable"})["id"]
    add_version(api, sid, b"one")
    assert send(api, "delete", f"/secrets/{sid}").status_code == 204
    error(api.get(f"{BASE}/secrets/{sid}"), 404, "not_found")


def test_key_id_of_another_project_is_refused(api, project, other_project):
    body = error(
        send(
            api,
            "post",
            "/secrets",
            {"name": "n", "project_id": str(project.id), "key_id": str(other_project.default_key_id)},
        ),
        400,
        "invalid_arguments",
    )
    assert body["details"][0]["argument_name"] == "key_id"


def test_a_disabled_key_fails_access_clearly_until_enabled(api, project):
    operator = Principal.for_command()
    key = key_create(principal=operator, project_id=project.id, name="customer")
    sid = create_secret(api, project, key_id=str(key.id))["id"]
    add_version(api, sid, b"one")
    assert payload_of(read(api, sid)) == b"one"
    key_disable(principal=operator, key_id=key.id)
    body = error(read(api, sid), 412, "precondition_failed")
    assert str(key.id) in body["message"] and "disabled" in body["message"]
    key_enable(principal=operator, key_id=key.id)
    assert payload_of(read(api, sid)) == b"one"


# --- authentication, authorization ------------------------------------------------------------
def test_unauthenticated_requests_are_401(api, project):
    anonymous = APIClient()
    body = error(anonymous.get(f"{BASE}/secrets"), 401, "denied_authentication")
    assert body["message"] == "authentication is denied"
    for token in (str(uuid.uuid4()), "garbage", ""):
        bad = APIClient()
        bad.credentials(HTTP_X_AUTH_TOKEN=token)
        error(bad.get(f"{BASE}/secrets"), 401, "denied_authentication")


def test_another_projects_secret_is_404_never_403(api, project, other_project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    foreign = client_for(other_project, "project_admin", "foreign")
    stranger = client_for(project, None, "stranger")
    for caller in (foreign, stranger):
        for method, path, body in [
            ("get", f"/secrets/{sid}", None),
            ("patch", f"/secrets/{sid}", {"name": "x"}),
            ("delete", f"/secrets/{sid}", None),
            ("post", f"/secrets/{sid}/protect", None),
            ("post", f"/secrets/{sid}/restore", None),
            ("post", f"/secrets/{sid}/add-owner", {"product": "edge_services"}),
            ("get", f"/secrets/{sid}/versions", None),
            ("post", f"/secrets/{sid}/versions", {"data": b64(b"x")}),
            ("get", f"/secrets/{sid}/versions/1", None),
            ("patch", f"/secrets/{sid}/versions/1", {"description": "x"}),
            ("delete", f"/secrets/{sid}/versions/1", None),
            ("get", f"/secrets/{sid}/versions/1/access", None),
            ("post", f"/secrets/{sid}/versions/1/disable", None),
        ]:
            response = (
                send(caller, method, path, body) if body is not None else getattr(caller, method)(f"{BASE}{path}")
            )
            error(response, 404, "not_found")
        error(send(caller, "post", "/secrets", {"name": "n", "project_id": str(project.id)}), 404, "not_found")
        by_path = caller.get(
            f"{BASE}/secrets-by-path/versions/1/access",
            {"project_id": str(project.id), "secret_path": "/", "secret_name": "db-password"},
        )
        error(by_path, 404, "not_found")
        assert caller.get(f"{BASE}/secrets", {"project_id": str(project.id)}).json()["total_count"] == 0
        assert caller.get(f"{BASE}/tags", {"project_id": str(project.id)}).json()["tags"] == []
    assert Secret.objects.get(id=sid).name == "db-password"


def test_a_visible_secret_without_the_right_role_is_403(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    reader = client_for(project, "secret_reader", "reader")
    auditor = client_for(project, "auditor", "auditor")
    assert payload_of(read(reader, sid)) == b"one"
    error(send(reader, "post", f"/secrets/{sid}/versions", {"data": b64(b"x")}), 403, "permissions_denied")
    assert auditor.get(f"{BASE}/secrets/{sid}").status_code == 200
    error(read(auditor, sid), 403, "permissions_denied")


def test_validation_error_shape(api, project):
    body = error(send(api, "post", "/secrets", {"project_id": str(project.id)}), 400, "invalid_arguments")
    assert body["message"] == "Validation Error" and "name" in body["fields"]
    error(send(api, "post", "/secrets", "[1, 2]"), 400)
    error(send(api, "post", "/secrets", "{not json"), 400)
    body = error(send(api, "post", "/secrets", {"name": "a/b", "project_id": str(project.id)}), 400)
    assert body["details"][0]["argument_name"] == "name"


# --- query counts per database ----------------------------------------------------------------
class Queries:
    """Queries made on each database inside the block."""

    def __enter__(self):
        self.contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default", "kek", "dek")}
        for context in self.contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc):
        for context in self.contexts.values():
            context.__exit__(*exc)

    def __getitem__(self, alias: str) -> int:
        return len(self.contexts[alias].captured_queries)


def counted(call):
    with Queries() as queries:
        response = call()
    assert response.status_code == 200, response.content
    return queries


def test_get_secret_touches_no_key_database(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    api.get(f"{BASE}/secrets/{sid}")  # warm the principal cache
    for path in (f"/secrets/{sid}", f"/secrets/{sid}/versions", f"/secrets/{sid}/versions/1", "/secrets"):
        queries = counted(lambda path=path: api.get(f"{BASE}{path}"))
        assert (queries["kek"], queries["dek"]) == (0, 0), path


def test_access_makes_at_most_one_query_per_key_database_and_none_when_cached(api, project):
    sid = create_secret(api, project)["id"]
    add_version(api, sid, b"one")
    api.get(f"{BASE}/secrets/{sid}")  # warm the principal cache
    material.key_cache().clear()
    cold = counted(lambda: read(api, sid, "1"))
    assert cold["dek"] <= 1 and cold["kek"] <= 1
    warm = counted(lambda: read(api, sid, "1"))
    assert (warm["dek"], warm["kek"]) == (0, 0)
    assert warm["default"] == cold["default"] and warm["default"] <= 8


def test_access_cost_on_default_does_not_grow_with_versions_or_grants(project):
    owner = Principal.for_command()
    from secrets_app.services import secrets as secret_services
    from secrets_app.services import versions as version_services

    few = secret_services.secret_create(principal=owner, project_id=project.id, name="few")
    many = secret_services.secret_create(principal=owner, project_id=project.id, name="many")
    version_services.secret_version_create(principal=owner, secret_id=few.id, data=b"one")
    for n in range(20):
        version_services.secret_version_create(principal=owner, secret_id=many.id, data=b"v%d" % n)
    others = [secret_services.secret_create(principal=owner, project_id=project.id, name=f"o{n}") for n in range(10)]
    one_grant = client_for(project, "secret_reader", "one-grant")
    ten_grants = client_for(project, "secret_reader", "ten-grants")
    for other in others[:9]:
        role_grant(principal=owner, user=ten_grants.user, role="secret_reader", obj=other)

    def cost(client, secret, revision):
        client.get(f"{BASE}/secrets/{secret.id}")  # warm the principal cache
        read(client, secret.id, revision)  # and the key cache
        queries = counted(lambda: read(client, secret.id, revision))
        return queries["default"], queries["kek"], queries["dek"]

    baseline = cost(one_grant, few, "1")
    assert baseline[1:] == (0, 0)
    for client, secret, revision in [
        (one_grant, many, "20"),
        (one_grant, many, "latest"),
        (one_grant, many, "latest_enabled"),
        (ten_grants, few, "1"),
        (ten_grants, many, "latest"),
    ]:
        assert cost(client, secret, revision) == baseline, (client.user.username, secret.name, revision)
    many_list = counted(lambda: one_grant.get(f"{BASE}/secrets/{many.id}/versions", {"page_size": 100}))
    few_list = counted(lambda: one_grant.get(f"{BASE}/secrets/{few.id}/versions", {"page_size": 100}))
    assert many_list["default"] == few_list["default"]
