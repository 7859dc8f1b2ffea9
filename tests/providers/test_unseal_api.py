"""The root-key custody endpoints: superusers only (404 for everyone else), audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def client_for(username: str, *, superuser: bool) -> APIClient:
    users = get_user_model().objects
    user = users.create_superuser(username) if superuser else users.create_user(username)
    issued = api_key_create(principal=Principal.for_command(), user=user)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client


@pytest.mark.parametrize("method,url", [("get", "/api/seal-status"), ("post", "/api/unseal"), ("post", "/api/seal")])
def test_non_superusers_get_404_and_an_audit_event(hierarchy, method, url):
    client = client_for("app", superuser=False)
    response = getattr(client, method)(url, {"share": "word " * 20}, format="json")
    assert response.status_code == 404
    assert response.json()["type"] == "not_found"
    event = AuditEvent.objects.filter(outcome="denied").last()
    assert event is not None and event.action.startswith("root_key.")
    assert "word" not in str(event.detail)


def test_malformed_share_is_a_validation_error(hierarchy):
    client = client_for("root", superuser=True)
    response = client.post("/api/unseal", {"share": ""}, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_arguments"


def test_without_a_seal_keeper_the_answer_is_a_clear_503(hierarchy):
    client = client_for("root", superuser=True)
    response = client.get("/api/seal-status")
    assert response.status_code == 503
    assert response.json()["type"] == "sealed"
    assert "seal_keeper" in response.json()["message"]


def test_seal_then_unseal_share_by_share_over_the_api(settings, shamir_in_process):
    from keys_app.services.projects import project_create_with_default_key as project_create
    from secrets_app.storage import secret_create, secret_version_create
    from tests.providers.test_shamir import cold_read, init_shamir

    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    shares = init_shamir()
    project = project_create(name="vault")
    secret = secret_create(project=project, name="db")
    secret_version_create(secret=secret, data=b"hunter2")
    client = client_for("root", superuser=True)
    assert client.post("/api/seal", format="json").status_code == 200
    assert client.get("/api/seal-status").json()["sealed"] is True
    with pytest.raises(Exception):  # noqa: B017 - any refusal: the key is gone from this process
        cold_read(secret)
    refused = client.post("/api/unseal", {"share": "academic acid acrobat " * 7}, format="json")
    assert refused.status_code == 400 and refused.json()["type"] == "invalid_arguments"
    first = client.post("/api/unseal", {"share": shares[0]}, format="json").json()
    assert first["sealed"] is True and "1" in str(first.get("progress"))
    client.post("/api/unseal", {"share": shares[3]}, format="json")
    last = client.post("/api/unseal", {"share": shares[4]}, format="json").json()
    assert last["sealed"] is False
    assert cold_read(secret) == [b"hunter2"]
    events = list(AuditEvent.objects.filter(action="root_key.unseal").values_list("detail", flat=True))
    assert len(events) == 4 and not any(word in str(events) for word in shares[0].split()[:3])


def test_console_custody_page_unseals_and_seals(settings, shamir_in_process, client):
    from tests.providers.test_shamir import init_shamir

    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    shares = init_shamir()
    users = get_user_model().objects
    client.force_login(users.create_superuser("root", password="x" * 12))
    page = client.get("/admin/root-key/")
    assert page.status_code == 200 and b"unsealed" in page.content
    client.post("/admin/root-key/", {"action": "seal"})
    assert b"sealed" in client.get("/admin/root-key/").content
    for share in shares[:3]:
        response = client.post("/admin/root-key/", {"action": "unseal", "share": share}, follow=True)
        assert shares[0].split()[2].encode() not in response.content  # never echoed
    assert client.get("/api/seal-status").json()["sealed"] is False
    assert AuditEvent.objects.filter(action="root_key.unseal").count() == 3


def test_console_custody_page_is_404_for_staff_who_are_not_superusers(hierarchy, client):
    staff = get_user_model().objects.create_user("staff", password="x" * 12, is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/root-key/").status_code == 404
