"""What an attacker or a careless client tries against the Key Manager API, beyond the
never-5xx sweeps of ``test_key_api``: the exact 4xx, nothing created or changed by a
refused request, and no plaintext or ciphertext in the audit log."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from keys_app.models import Key

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
BASE = "/key-manager/v1alpha1/regions/fr-par"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def api(project):
    operator = Principal.for_command()
    user = get_user_model().objects.create_user("owner")
    role_grant(principal=operator, user=user, role="project_admin", obj=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=api_key_create(principal=operator, user=user, project=project).secret_key)
    return client


def send(api, method: str, path: str, body=None):
    data = body if isinstance(body, str | bytes) else json.dumps(body if body is not None else {})
    return getattr(api, method)(f"{BASE}{path}", data=data, content_type="application/json")


def error(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert "message" in body, body
    if type_ is not None:
        assert body.get("type") == type_, body
    return body


def make_key(api, project, **body) -> str:
    response = send(api, "post", "/keys", {"project_id": str(project.id), "name": "k", **body})
    assert response.status_code == 200, response.content
    return str(response.json()["id"])


@pytest.mark.parametrize("body", ["[]", "null", '"x"', "1", '[{"plaintext": "eA=="}]'])
def test_a_body_that_is_not_a_json_object_is_refused_and_changes_nothing(api, project, body):
    kid = make_key(api, project)
    before = list(Key.objects.values())
    for method, path in [
        ("post", "/keys"),
        ("patch", f"/keys/{kid}"),
        ("post", f"/keys/{kid}/encrypt"),
        ("post", f"/keys/{kid}/decrypt"),
        ("post", f"/keys/{kid}/generate-data-key"),
    ]:
        error(send(api, method, path, body), 400)
    assert list(Key.objects.values()) == before


@pytest.mark.parametrize("params", [{"tags": "a\x00"}, {"tags": ["a", "b\x00c"]}])
def test_a_nul_in_a_tag_filter_is_a_validation_error(api, project, params):
    """Regression: on PostgreSQL a NUL in ``tags`` reached the jsonb query and answered 500."""
    make_key(api, project, tags=["a"])
    error(api.get(f"{BASE}/keys", params), 400, "invalid_arguments")


@pytest.mark.parametrize(
    "period", ["\u0661\u0660\u0660\u0660\u0660\u0660s", "\uff18\uff16\uff14\uff10\uff10s", "8.64e4s", 86400, "86400"]
)
def test_rotation_periods_take_ascii_digits_only(api, project, period):
    """Regression: 100000 in Arabic-Indic digits then ``s`` was read as 100 000 seconds."""
    body = {"project_id": str(project.id), "rotation_policy": {"rotation_period": period}}
    error(send(api, "post", "/keys", body), 400)
    assert not Key.objects.exclude(id=project.default_key_id).exists()


@pytest.mark.parametrize("associated_data", [5, ["YQ=="], {"a": 1}, "not base64!", True, "YQ"])
def test_associated_data_of_the_wrong_type_is_a_validation_error(api, project, associated_data):
    kid = make_key(api, project)
    for action, field in (("encrypt", "plaintext"), ("decrypt", "ciphertext")):
        body = {field: b64(b"x" * 40), "associated_data": associated_data}
        found = error(send(api, "post", f"/keys/{kid}/{action}", body), 400, "invalid_arguments")
        assert "associated_data" in found["fields"]
    assert not AuditEvent.objects.filter(action__in=["key.encrypt", "key.decrypt"]).exists()


def test_every_broken_ciphertext_is_the_same_400_and_is_never_recorded(api, project):
    kid = make_key(api, project)
    good = send(api, "post", f"/keys/{kid}/encrypt", {"plaintext": b64(b"hello-plaintext")}).json()["ciphertext"]
    raw = base64.b64decode(good)
    broken = [b64(raw[:-1]), b64(raw[:5]), b64(b"\x00" * 4), b64(raw + b"x"), b64(raw[:-1] + bytes([raw[-1] ^ 1]))]
    messages = set()
    for ciphertext in broken:
        messages.add(error(send(api, "post", f"/keys/{kid}/decrypt", {"ciphertext": ciphertext}), 400)["message"])
    wrong_context = {"ciphertext": good, "associated_data": b64(b"other")}
    messages.add(error(send(api, "post", f"/keys/{kid}/decrypt", wrong_context), 400)["message"])
    assert len(messages) == 1  # no oracle on what was wrong
    for ciphertext in ("not base64", "", 5, None):
        error(send(api, "post", f"/keys/{kid}/decrypt", {"ciphertext": ciphertext}), 400)
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str)
    for needle in [good, "hello-plaintext", b64(b"hello-plaintext"), *broken]:
        assert needle not in dumped
    assert AuditEvent.objects.filter(action="key.decrypt", outcome="failed").count() >= len(broken)


@pytest.mark.parametrize(
    "body", [{"name": 5}, {"tags": [1, 2]}, {"description": 12}, {"origin": 1}, {"usage": {"symmetric_encryption": 1}}]
)
def test_numbers_are_not_strings(api, project, body):
    """DRF's CharField would have turned ``5`` into ``"5"``; Scaleway refuses a number where
    the API takes a string, and so do we, creating nothing."""
    error(send(api, "post", "/keys", {"project_id": str(project.id), **body}), 400)
    assert not Key.objects.exclude(id=project.default_key_id).exists()
