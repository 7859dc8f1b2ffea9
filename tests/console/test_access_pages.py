"""API keys, roles and the audit log pages."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from hkms_core.access.apikeys import api_key_authenticate
from hkms_core.access.models import ApiKey, RoleGrant
from hkms_core.audit.models import AuditEvent
from tests.console.conftest import confirm_post

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def test_api_key_secret_is_shown_once_then_revoked(world, as_user):
    client = as_user("reader")
    response = client.post(
        reverse("admin:api_keys"), {"description": "ci", "project": str(world.project.id), "expires_in_days": "30"}
    )
    page = response.content.decode()
    api_key = ApiKey.objects.get(user=world.users["reader"], description="ci")
    secret = page.split('id="secret-key">')[1].split("<")[0]
    assert api_key_authenticate(secret) == api_key and api_key.expires_at is not None
    assert "no-store" in response["Cache-Control"]
    assert secret not in client.get(reverse("admin:api_keys")).content.decode()  # once
    # Someone else cannot revoke it (nor see it).
    other = as_user("writer")
    assert api_key.access_key not in other.get(reverse("admin:api_keys")).content.decode()
    other.post(reverse("admin:api_key_revoke", args=[api_key.access_key]))
    assert api_key_authenticate(secret) is not None
    confirm_post(as_user("reader"), reverse("admin:api_key_revoke", args=[api_key.access_key]))
    assert api_key_authenticate(secret) is None
    assert {"api_key.create", "api_key.revoke"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_only_superusers_create_api_keys_for_others(world, as_user):
    ApiKey.objects.all().delete()
    page = as_user("reader").get(reverse("admin:api_keys")).content.decode()
    assert 'name="username"' not in page
    as_user("reader").post(reverse("admin:api_keys"), {"username": "writer"})  # ignored: for oneself
    assert ApiKey.objects.get().user == world.users["reader"]
    ApiKey.objects.all().delete()
    as_user("admin").post(reverse("admin:api_keys"), {"username": "writer"})
    assert ApiKey.objects.get().user == world.users["writer"]


def test_roles_page_grants_and_revokes_within_the_grantors_rights(world, as_user):
    client = as_user("sadmin")
    page = client.get(reverse("admin:roles")).content.decode()
    assert f"project:{world.project.id}" in page and f"project:{world.other_project.id}" not in page
    response = client.post(
        reverse("admin:roles"),
        {"username": "stranger", "role": "secret_writer", "target": f"secret:{world.secret.id}"},
    )
    assert response.status_code == 302
    grant = RoleGrant.objects.get(user=world.users["stranger"])
    assert as_user("stranger").get(reverse("admin:secret_detail", args=[world.secret.id])).status_code == 200
    client = as_user("sadmin")  # the test client is shared: log back in
    # A secret admin does not read payloads, so it may not hand out secret_reader.
    page = client.post(
        reverse("admin:roles"), {"username": "writer", "role": "secret_reader", "target": f"secret:{world.secret.id}"}
    ).content.decode()
    assert "rights you do not hold yourself" in page
    # A secret admin may not hand out key roles or project_admin.
    page = client.post(
        reverse("admin:roles"), {"username": "stranger", "role": "key_admin", "target": f"project:{world.project.id}"}
    ).content.decode()
    assert "You may not grant this role" in page
    page = client.post(
        reverse("admin:roles"), {"username": "nobody", "role": "secret_reader", "target": f"project:{world.project.id}"}
    ).content.decode()
    assert "does not exist" in page and 'value="nobody"' in page
    confirm_post(as_user("sadmin"), reverse("admin:role_revoke"), {"grant": grant.pk})
    assert not RoleGrant.objects.filter(pk=grant.pk).exists()
    assert as_user("stranger").get(reverse("admin:secret_detail", args=[world.secret.id])).status_code == 404
    # Grants on another project are neither listed nor revocable.
    other_grant = RoleGrant.objects.get(user=world.users["other"])
    assert as_user("sadmin").post(reverse("admin:role_revoke"), {"grant": other_grant.pk}).status_code == 403
    assert RoleGrant.objects.filter(pk=other_grant.pk).exists()


def test_audit_log_filters_export_and_verify(world, as_user, client):
    as_user("reader").post(reverse("admin:secret_version_reveal", args=[world.secret.id, 1]), {"confirm": "1"})
    as_user("other").post(reverse("admin:secret_version_reveal", args=[world.other_secret.id, 1]), {"confirm": "1"})
    auditor = as_user("auditor")
    page = auditor.get(reverse("admin:audit_log") + "?action=secret.version.access").content.decode()
    assert "<td>reader" in page and "<td>other" not in page  # only the audited project's events
    page = auditor.get(reverse("admin:audit_log") + "?actor=reader&outcome=denied").content.decode()
    assert "No events match" in page
    response = auditor.get(reverse("admin:audit_export") + "?action=secret.version.access")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["actor"] for r in rows] == ["reader"] and {"hash", "prev_hash", "seq"} <= set(rows[0])
    assert auditor.post(reverse("admin:audit_verify"), follow=True).content.count(b"Audit chain intact") == 1
    actions = list(AuditEvent.objects.filter(actor="auditor").values_list("action", flat=True))
    assert "audit.export" in actions and "audit.verify" in actions
    everything = as_user("admin").get(reverse("admin:audit_log") + "?action=secret.version.access").content.decode()
    assert "<td>reader" in everything and "<td>other" in everything
