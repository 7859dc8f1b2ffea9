"""What an attacker or a careless client tries against the Secret Manager API.

Each test asserts the contract a client relies on: Scaleway's JSON error shape with the
right 4xx (never a 500 or an HTML page), 404 for what the caller may not see, nothing
changed by a refused request, and no payload or token where it does not belong.
Several are regression tests of defects found by probing (see each docstring).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create, api_key_revoke
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from keys_app.services.keys.lifecycle import key_disable
from keys_app.services.keys.metadata import key_create
from secrets_app import storage
from secrets_app.models import Secret, SecretVersion
from secrets_app.services import access as access_services

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
BASE = "/secret-manager/v1beta1/regions/fr-par"
KM = "/key-manager/v1alpha1/regions/fr-par"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client_for(project, role, name, obj=None, **key_options):
    operator = Principal.for_command()
    user = get_user_model().objects.create_user(name)
    if role:
        role_grant(principal=operator, user=user, role=role, obj=obj or project)
    issued = api_key_create(principal=operator, user=user, project=project, **key_options)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    client.user = user  # type: ignore[attr-defined]
    client.issued = issued  # type: ignore[attr-defined]
    return client


@pytest.fixture
def api(project):
    return client_for(project, "project_admin", "owner")


def send(api, method, path, body=None, content_type="application/json", base=BASE):
    data = body if isinstance(body, str | bytes) else json.dumps(body if body is not None else {})
    return getattr(api, method)(f"{base}{path}", data=data, content_type=content_type)


def create_secret(api, project, **body) -> str:
    response = send(api, "post", "/secrets", {"name": "db-password", "project_id": str(project.id), **body})
    assert response.status_code == 200, response.content
    return str(response.json()["id"])


def add_version(api, secret_id: str, data: bytes) -> None:
    response = send(api, "post", f"/secrets/{secret_id}/versions", {"data": b64(data)})
    assert response.status_code == 200, response.content


def error(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert "message" in body, body
    if type_ is not None:
        assert body.get("type") == type_, body
    return body


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- request bodies ---------------------------------------------------------------------------
@pytest.mark.parametrize("body", ["[]", "null", '"x"', '[{"name": "x"}]', "1", "true"])
def test_a_body_that_is_not_a_json_object_is_a_validation_error(api, project, body):
    """Regression: PATCH with ``[]``, ``null``, a string or a number answered 200 and
    recorded an empty ``secret.update`` (the body was wrapped, then ignored)."""
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    before = Secret.objects.get(id=sid).updated_at
    updates = len(events("secret.update"))
    for method, path in [
        ("patch", f"/secrets/{sid}"),
        ("patch", f"/secrets/{sid}/versions/1"),
        ("post", f"/secrets/{sid}/versions"),
        ("post", "/secrets"),
        ("post", f"/secrets/{sid}/add-owner"),
    ]:
        found = error(send(api, method, path, body), 400, "invalid_arguments")
        assert found["message"] == "Validation Error" and "non_field_errors" in found["fields"]
    assert Secret.objects.get(id=sid).updated_at == before and len(events("secret.update")) == updates
    assert Secret.objects.count() == 1 and SecretVersion.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"data": 12},
        {"data": {"a": 1}},
        {"data": "YWJj\n"},  # whitespace inside base64
        {"data": " YWJj"},
        {"data": "-_-_"},  # url-safe alphabet
        {"data": b64(b"x"), "data_crc32": -1},
        {"data": b64(b"x"), "data_crc32": 2**32},
        {"data": b64(b"x"), "data_crc32": "abc"},
        {"data": b64(b"x"), "data_crc32": 1.5},
        {"data": b64(b"x"), "disable_previous": "maybe"},
    ],
)
def test_a_refused_version_is_not_created(api, project, body):
    sid = create_secret(api, project)
    error(send(api, "post", f"/secrets/{sid}/versions", body), 400, "invalid_arguments")
    assert not SecretVersion.objects.filter(secret_id=sid).exists()
    assert Secret.objects.get(id=sid).version_count == 0


@pytest.mark.parametrize(
    "body",
    [
        {"tags": "abc"},
        {"tags": [None]},
        {"name": "a/b"},
        {"name": ""},
        {"protected": "maybe"},
        {"ephemeral_policy": "x"},
        {"ephemeral_policy": {"time_to_live": 5}},
        {"ephemeral_policy": {"time_to_live": "1e3s", "action": "delete"}},
        {"ephemeral_policy": {"time_to_live": "3600s", "action": "explode"}},
        {"description": "a\x00b"},
        {"key_id": "\x00"},
        {"path": "/a/../b"},
        {"path": "/a\x00"},
        {"type": ["opaque"]},
        {"project_id": None},
        # numbers are not strings (DRF's CharField would have turned them into "5", "1", ...)
        {"name": 5},
        {"tags": [1, 2]},
        {"description": 12},
        {"path": 7},
        {"project_id": 1234},
    ],
)
def test_a_refused_secret_is_not_created(api, project, body):
    error(send(api, "post", "/secrets", {"name": "n", "project_id": str(project.id), **body}), 400)
    assert not Secret.objects.exists()


@pytest.mark.parametrize(
    "ttl", ["\u0661\u0660s", "\u0663\u0666\u0660\u0660s", "\U0001d7d1\U0001d7d4\U0001d7ce\U0001d7ces", "3600s\n3600s"]
)
def test_durations_take_ascii_digits_only(api, project, ttl):
    """Regression: ten in Arabic-Indic digits then ``s`` was read as ten seconds (``\\d`` is Unicode)."""
    policy = {"time_to_live": ttl, "action": "delete"}
    error(send(api, "post", "/secrets", {"name": "n", "project_id": str(project.id), "ephemeral_policy": policy}), 400)
    assert not Secret.objects.exists()


def test_a_body_over_the_upload_limit_is_413_in_scaleway_shape(api, project):
    sid = create_secret(api, project)
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"x" * (3 * 1024 * 1024))}), 413)
    assert not SecretVersion.objects.exists()


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"]
)
def test_only_json_bodies_are_accepted(api, project, content_type):
    response = api.generic("POST", f"{BASE}/secrets", f"name=n&project_id={project.id}", content_type=content_type)
    error(response, 415)
    assert not Secret.objects.exists()


def test_ephemeral_properties_of_the_wrong_type_are_validation_errors(api, project):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    for props in [
        {"expires_at": "not a date"},
        {"expires_at": 5},
        {"action": "explode"},
        {"expires_once_accessed": "maybe"},
        "x",
        [1],
    ]:
        error(send(api, "patch", f"/secrets/{sid}/versions/1", {"ephemeral_properties": props}), 400)
    assert SecretVersion.objects.get(secret_id=sid).expires_at is None
    for expires_at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2020-01-01T00:00:00"):
        body = {"ephemeral_properties": {"expires_at": expires_at}}
        response = send(api, "patch", f"/secrets/{sid}/versions/1", body)
        assert response.status_code == 200, response.content


def test_a_refused_update_changes_nothing(api, project):
    sid = create_secret(api, project)
    for body in [
        {"ephemeral_policy": {"time_to_live": "0s", "action": "delete"}},
        {"ephemeral_policy": {"expires_once_accessed": True}},
        {"tags": [str(i) for i in range(51)]},
        {"name": ".."},
        {"path": "/."},
    ]:
        error(send(api, "patch", f"/secrets/{sid}", body), 400, "invalid_arguments")
    secret = Secret.objects.get(id=sid)
    assert (secret.name, secret.path, secret.tags, secret.ephemeral_ttl) == ("db-password", "/", [], None)
    assert not secret.ephemeral_expires_once_accessed


# --- query parameters and paths ---------------------------------------------------------------
@pytest.mark.parametrize(
    "path,params",
    [
        ("/secrets", {"name": "a\x00b"}),
        ("/secrets", {"tags": "a\x00"}),
        ("/secrets", {"tags": ["x", "\x00"]}),
        ("/secrets/browse", {"tags": "\x00"}),
    ],
)
def test_a_nul_in_a_text_filter_is_a_validation_error(api, project, path, params):
    """Regression: on PostgreSQL a NUL in ``name`` or ``tags`` reached the query and answered 500."""
    create_secret(api, project, tags=["x"])
    error(api.get(f"{BASE}{path}", params), 400, "invalid_arguments")


@pytest.mark.parametrize(
    "revision",
    [
        "0",
        "-1",
        "1e3",
        "99999999999999999999999",
        "latest_enabled ",
        "\u0661",
        "1.0",
        " 1",
        "+1",
        "LATEST",
        "2147483648",
    ],
)
def test_malformed_revisions_are_400_but_404_on_a_hidden_secret(api, project, revision):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    for method, suffix in [("get", ""), ("get", "/access"), ("post", "/enable"), ("delete", "")]:
        error(getattr(api, method)(f"{BASE}/secrets/{sid}/versions/{revision}{suffix}"), 400, "invalid_arguments")
    stranger = client_for(project, None, "stranger")
    for suffix in ("", "/access"):
        error(stranger.get(f"{BASE}/secrets/{sid}/versions/{revision}{suffix}"), 404, "not_found")
    assert SecretVersion.objects.get(secret_id=sid).status == "enabled"


def test_odd_paths_answer_json(api, project):
    sid = create_secret(api, project)
    for path in [
        f"{BASE}/secrets/{sid}/../{sid}",
        f"{BASE}//secrets/{sid}",
        f"{BASE}/secrets/{sid}%00",
        f"{BASE}/secrets/" + "a" * 5000,
        f"{BASE}/secrets/{sid}/versions/1/access/",
        f"{BASE}/secrets/",
        "/secret-manager/v1beta1/regions/" + "x" * 3000 + "/secrets",
    ]:
        response = api.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response["Content-Type"].startswith("application/json"), (path, response.content[:200])


def test_methods_not_allowed_are_405_in_scaleway_shape(api, project):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    for method, path in [
        ("put", "/secrets"),
        ("delete", "/secrets"),
        ("put", f"/secrets/{sid}"),
        ("get", f"/secrets/{sid}/protect"),
        ("delete", f"/secrets/{sid}/versions"),
        ("post", f"/secrets/{sid}/versions/1/access"),
        ("patch", "/tags"),
    ]:
        error(getattr(api, method)(f"{BASE}{path}"), 405, "method_not_allowed")
    assert Secret.objects.count() == 1


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_head_does_not_read_a_payload(api, project, action):
    """Regression: Django serves HEAD with ``get``, so HEAD …/access decrypted, audited a read
    and consumed an expires-once-accessed version without delivering it."""
    sid = create_secret(api, project, path="/apps", ephemeral_policy={"expires_once_accessed": True, "action": action})
    add_version(api, sid, b"one")
    by_path = {"project_id": str(project.id), "secret_path": "/apps", "secret_name": "db-password"}
    assert api.head(f"{BASE}/secrets/{sid}/versions/1/access").status_code == 405
    assert api.head(f"{BASE}/secrets-by-path/versions/1/access", by_path).status_code == 405
    assert events("secret.version.access") == []
    response = api.get(f"{BASE}/secrets/{sid}/versions/1/access")
    assert response.status_code == 200 and base64.b64decode(response.json()["data"]) == b"one"
    assert api.get(f"{BASE}/secrets/{sid}").status_code == 200  # metadata: HEAD still fine elsewhere
    assert api.head(f"{BASE}/secrets/{sid}").status_code == 200


def test_options_shows_no_payload_and_needs_authentication(api, project):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    response = api.options(f"{BASE}/secrets/{sid}/versions/1/access")
    assert response.status_code == 200 and b64(b"one").encode() not in response.content
    assert "HEAD" not in response["Allow"]
    error(APIClient().options(f"{BASE}/secrets/{sid}"), 401, "denied_authentication")


# --- authentication ---------------------------------------------------------------------------
def test_the_token_is_only_read_from_x_auth_token(api):
    token = api._credentials["HTTP_X_AUTH_TOKEN"]
    anonymous = APIClient()
    for params, headers in [
        ({"X-Auth-Token": token}, {}),
        ({"x_auth_token": token, "token": token}, {}),
        ({}, {"HTTP_AUTHORIZATION": f"Bearer {token}"}),
        ({}, {"HTTP_AUTHORIZATION": f"Token {token}"}),
        ({}, {"HTTP_X_AUTH_TOKEN": f"{token}\x00"}),
    ]:
        error(anonymous.get(f"{BASE}/secrets", params, **headers), 401, "denied_authentication")


def test_expired_revoked_and_inactive_keys_are_401(project):
    expiring = client_for(project, "project_admin", "a1", expires_in=timedelta(seconds=1))
    assert expiring.get(f"{BASE}/secrets").status_code == 200  # now cached
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(seconds=2)):
        error(expiring.get(f"{BASE}/secrets"), 401, "denied_authentication")
    revoked = client_for(project, "project_admin", "a2")
    assert revoked.get(f"{BASE}/secrets").status_code == 200
    api_key_revoke(principal=Principal.for_command(), access_key=revoked.issued.api_key.access_key)
    error(revoked.get(f"{BASE}/secrets"), 401, "denied_authentication")
    inactive = client_for(project, "project_admin", "a3")
    assert inactive.get(f"{BASE}/secrets").status_code == 200
    inactive.user.is_active = False
    inactive.user.save()
    error(inactive.get(f"{BASE}/secrets"), 401, "denied_authentication")


# --- authorization ----------------------------------------------------------------------------
def test_a_secret_reader_cannot_use_the_secrets_key_in_key_manager(api, project):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    reader = client_for(project, "secret_reader", "reader")
    kid = str(project.default_key_id)
    error(send(reader, "post", f"/keys/{kid}/decrypt", {"ciphertext": b64(b"x" * 40)}, base=KM), 404, "not_found")
    error(send(reader, "post", f"/keys/{kid}/encrypt", {"plaintext": b64(b"x")}, base=KM), 404, "not_found")
    error(send(reader, "post", f"/keys/{kid}/generate-data-key", {}, base=KM), 404, "not_found")
    error(reader.get(f"{KM}/keys/{kid}"), 404, "not_found")


def test_key_id_of_a_hidden_key_answers_like_a_missing_one(project):
    """Regression: a ``secret_writer`` naming a key of its project that it may not see got
    404 ``key \u2026 not found`` for an enabled key, 400 for a disabled one and 400 for no key
    at all: key ids and their states could be probed."""
    operator = Principal.for_command()
    hidden = key_create(principal=operator, project_id=project.id, name="hidden")
    disabled = key_create(principal=operator, project_id=project.id, name="off")
    key_disable(principal=operator, key_id=disabled.id)
    writer = client_for(project, "secret_writer", "writer")
    answers = []
    for key_id in (hidden.id, disabled.id, uuid.uuid4()):
        body = {"name": "n", "project_id": str(project.id), "key_id": str(key_id)}
        found = error(send(writer, "post", "/secrets", body), 400, "invalid_arguments")
        answers.append(found["details"])
    assert answers[0] == answers[1] == answers[2]
    assert not Secret.objects.exists()
    # Every attempt is audited, the missing key's too (the same work either way: THREAT_MODEL.md).
    denied = events("secret.create")
    assert [e.outcome for e in denied] == ["denied", "denied", "denied"]
    assert {str(hidden.id), str(disabled.id)} < {e.object_id for e in denied}
    # Who may use the key learns its state; who may see but not use it is told so (403).
    user = client_for(project, "key_user", "keyuser")
    role_grant(principal=operator, user=user.user, role="secret_writer", obj=project)
    body = {"name": "n", "project_id": str(project.id), "key_id": str(disabled.id)}
    found = error(send(user, "post", "/secrets", body), 400, "invalid_arguments")
    assert "enabled" in found["message"] + json.dumps(found["details"])
    auditor = client_for(project, "auditor", "auditor")
    role_grant(principal=operator, user=auditor.user, role="secret_writer", obj=project)
    body = {"name": "n", "project_id": str(project.id), "key_id": str(hidden.id)}
    error(send(auditor, "post", "/secrets", body), 403, "permissions_denied")
    assert body["key_id"] and not Secret.objects.exists()


def test_access_by_path_with_the_callers_own_project_id_finds_nothing(api, project, other_project):
    sid = create_secret(api, project, path="/apps")
    add_version(api, sid, b"one")
    foreign = client_for(other_project, "project_admin", "foreign")
    for project_id in (project.id, other_project.id):
        params = {"project_id": str(project_id), "secret_path": "/apps", "secret_name": "db-password"}
        error(foreign.get(f"{BASE}/secrets-by-path/versions/latest/access", params), 404, "not_found")


# --- secrets stay secret ----------------------------------------------------------------------
def test_payloads_and_tokens_appear_in_no_audit_event_or_log_line(api, project, caplog):
    token = api._credentials["HTTP_X_AUTH_TOKEN"]
    payload = b"hunter2-very-secret"
    sid = create_secret(api, project)
    add_version(api, sid, payload)
    assert api.get(f"{BASE}/secrets/{sid}/versions/1/access").status_code == 200
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(payload), "data_crc32": 1}), 400)
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(payload) + "!"}), 400)
    APIClient().get(f"{BASE}/secrets", HTTP_X_AUTH_TOKEN=token[:-1] + "0")
    rows = list(AuditEvent.objects.values())
    assert rows
    dumped = json.dumps(rows, default=str)
    for needle in ("hunter2", b64(payload), token, token[:-1] + "0"):
        assert needle not in dumped and needle not in caplog.text


# --- state machine and races ------------------------------------------------------------------
def test_a_secret_scheduled_for_deletion_refuses_payload_work_until_restored(api, project):
    sid = create_secret(api, project)
    add_version(api, sid, b"one")
    error(send(api, "post", f"/secrets/{sid}/restore"), 412, "precondition_failed")
    assert send(api, "delete", f"/secrets/{sid}").status_code == 204
    error(send(api, "delete", f"/secrets/{sid}"), 412, "precondition_failed")
    error(api.get(f"{BASE}/secrets/{sid}/versions/1/access"), 412, "precondition_failed")
    error(send(api, "post", f"/secrets/{sid}/versions", {"data": b64(b"x")}), 412, "precondition_failed")
    error(send(api, "post", f"/secrets/{sid}/versions/1/enable"), 412, "precondition_failed")
    assert SecretVersion.objects.filter(secret_id=sid).count() == 1
    assert send(api, "post", f"/secrets/{sid}/restore").status_code == 200
    assert api.get(f"{BASE}/secrets/{sid}/versions/1/access").status_code == 200


def test_two_readers_of_an_expires_once_accessed_version_one_gets_it(api, project, monkeypatch):
    """The second reader decrypts while the first consumes the version: only one payload leaves."""
    sid = create_secret(api, project, ephemeral_policy={"expires_once_accessed": True, "action": "disable"})
    add_version(api, sid, b"only-once")
    real_payload = storage.secret_version_payload
    outcomes: list[object] = []

    def first_reader_wins_meanwhile(version):
        data = real_payload(version)
        if not outcomes:
            outcomes.append(None)
            outcomes[0] = access_services.secret_version_access(
                principal=Principal.for_command(), secret_id=sid, revision=1
            )
        return data

    monkeypatch.setattr(storage, "secret_version_payload", first_reader_wins_meanwhile)
    error(api.get(f"{BASE}/secrets/{sid}/versions/1/access"), 410, "resource_expired")
    assert len(outcomes) == 1 and outcomes[0].data == b"only-once"  # type: ignore[attr-defined]
    assert [e.outcome for e in events("secret.version.access")] == ["allowed"]
    version = SecretVersion.objects.get(secret_id=sid)
    assert version.status == "disabled" and version.accessed_at is not None
