"""Secrets through the console: create, typed versions, inline errors, the reveal flow."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from hkms_core.audit.models import AuditEvent
from secrets_app.models import Secret
from secrets_app.storage import secret_version_payload
from tests.console.conftest import confirm_post

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def _reveal_url(secret, revision=1):
    return reverse("admin:secret_version_reveal", args=[secret.id, revision])


def test_reveal_needs_a_confirmation_and_shows_the_payload_once_uncached(world, as_user):
    client = as_user("reader")
    confirm = client.get(_reveal_url(world.secret))
    assert confirm.status_code == 200 and b"s3cr3t-payload-acme" not in confirm.content
    assert not AuditEvent.objects.filter(action="secret.version.access").exists()  # nothing read yet
    response = client.post(_reveal_url(world.secret), {"confirm": "1"})
    assert response.status_code == 200
    assert b"s3cr3t-payload-acme" in response.content
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.filter(action="secret.version.access").latest("seq")
    assert (event.actor, event.outcome, event.via, event.detail["revision"]) == ("reader", "allowed", "console", 1)
    assert "s3cr3t" not in json.dumps(event.detail)
    # The detail page never shows it again.
    assert b"s3cr3t-payload-acme" not in client.get(reverse("admin:secret_detail", args=[world.secret.id])).content


def test_auditor_cannot_reveal_and_the_refusal_is_audited(world, as_user):
    client = as_user("auditor")
    assert client.get(_reveal_url(world.secret)).status_code == 403
    response = client.post(_reveal_url(world.secret), {"confirm": "1"})
    assert response.status_code == 403 and b"s3cr3t-payload-acme" not in response.content
    event = AuditEvent.objects.filter(action="secret.version.access").latest("seq")
    assert (event.actor, event.outcome) == ("auditor", "denied")


def test_strangers_and_other_projects_get_404(world, as_user):
    for user in ("stranger", "other", "keyadmin"):
        assert as_user(user).post(_reveal_url(world.secret), {"confirm": "1"}).status_code == 404
    assert as_user("reader").post(_reveal_url(world.other_secret), {"confirm": "1"}).status_code == 404


def test_structured_payloads_are_shown_as_fields(world, as_user, make_secret):
    secret = make_secret(
        json.dumps({"username": "svc", "password": "pw-9"}).encode(), name="creds", type="basic_credentials"
    )
    page = as_user("reader").post(_reveal_url(secret), {"confirm": "1"}).content.decode()
    assert 'id="payload-fields"' in page and "<dt>username</dt>" in page and "pw-9" in page


def test_create_a_secret_and_typed_versions(world, as_user):
    client = as_user("writer")
    response = client.post(
        reverse("admin:secret_create"),
        {
            "project": str(world.project.id),
            "name": "pg-main",
            "path": "/prod/pg",
            "type": "database_credentials",
            "tags": "prod, pg",
            "description": "main database",
            "key": "",
            # The first value, typed, in the same form (the other types' fields are ignored).
            "database_credentials-engine": "postgres",
            "database_credentials-host": "db.internal",
            "database_credentials-port": "5432",
            "database_credentials-dbname": "main",
            "database_credentials-username": "app",
            "database_credentials-password": "pg-pass-0",
            "opaque-data": "ignored: another type",
        },
    )
    secret = Secret.objects.get(name="pg-main")
    assert response.status_code == 302 and response["Location"] == reverse("admin:secret_detail", args=[secret.id])
    assert (secret.path, secret.tags, secret.key_id) == ("/prod/pg", ["prod", "pg"], world.project.default_key_id)
    first = secret.versions.get(revision=1)
    first.secret = Secret.objects.select_related("key").get(id=secret.id)
    assert json.loads(secret_version_payload(first))["password"] == "pg-pass-0"
    form = client.get(reverse("admin:secret_version_add", args=[secret.id])).content.decode()
    assert 'name="dbname"' in form and 'name="port"' in form
    response = client.post(
        reverse("admin:secret_version_add", args=[secret.id]),
        {
            "engine": "postgres",
            "host": "db.internal",
            "port": "5432",
            "dbname": "main",
            "username": "app",
            "password": "pg-pass-1",
            "description": "first",
        },
    )
    assert response.status_code == 302
    version = secret.versions.get(revision=2)
    version.secret = Secret.objects.select_related("key").get(id=secret.id)
    assert json.loads(secret_version_payload(version)) == {
        "engine": "postgres",
        "username": "app",
        "password": "pg-pass-1",
        "host": "db.internal",
        "dbname": "main",
        "port": "5432",
    }
    event = AuditEvent.objects.filter(action="secret.version.create").latest("seq")
    assert event.actor == "writer" and "pg-pass-1" not in json.dumps(event.detail)


def test_bad_input_is_shown_inline_and_nothing_typed_is_lost(world, as_user):
    client = as_user("writer")
    typed = {
        "project": str(world.project.id),
        "name": "billing",
        "path": "/prod/bad path!",
        "type": "key_value",
        "tags": "prod, billing",
        "description": "the billing service",
        "key": "",
    }
    response = client.post(reverse("admin:secret_create"), typed)
    page = response.content.decode()
    assert response.status_code == 200 and not Secret.objects.filter(name="billing").exists()
    assert 'id="id_path_errors"' in page and "segments must be" in page
    for value in ("billing", "/prod/bad path!", "prod, billing", "the billing service"):
        assert f'value="{value}"' in page or f"{value}</textarea>" in page, value
    assert '<option value="key_value" selected>' in page

    kv = Secret.objects.create(project=world.project, key=world.key, name="flags", type="key_value")
    url = reverse("admin:secret_version_add", args=[kv.id])
    response = client.post(url, {"pairs": "A=1\nnot a pair\nB=2", "description": "typed with care"})
    page = response.content.decode()
    assert 'id="id_pairs_errors"' in page and "Line 2 is not KEY=value" in page
    # The secret value is not sent back (the user types it again); everything else is.
    assert "not a pair" not in page and "enter it again" in page and 'value="typed with care"' in page
    assert client.post(url, {"pairs": "A=1\nB=two"}).status_code == 302


def test_version_and_secret_actions(world, as_user):
    writer = as_user("writer")
    url = reverse("admin:secret_version_action", args=[world.secret.id, 1, "disable"])
    assert confirm_post(writer, url).status_code == 302
    assert world.secret.versions.get(revision=1).status == "disabled"
    page = writer.get(reverse("admin:secret_detail", args=[world.secret.id])).content.decode()
    assert 'data-action="enable"' in page and 'data-action="delete"' not in page  # deleting needs secret_admin
    admin = as_user("sadmin")
    confirm_post(admin, reverse("admin:secret_version_action", args=[world.secret.id, 1, "delete"]))
    assert world.secret.versions.get(revision=1).status == "scheduled_for_deletion"
    admin.post(reverse("admin:secret_version_action", args=[world.secret.id, 1, "restore"]))
    assert world.secret.versions.get(revision=1).status == "disabled"
    admin.post(reverse("admin:secret_action", args=[world.secret.id, "protect"]))
    deleted = confirm_post(admin, reverse("admin:secret_action", args=[world.secret.id, "delete"]))
    response = admin.get(deleted["Location"])
    world.secret.refresh_from_db()
    assert world.secret.protected and world.secret.deletion_requested_at is None
    assert b"protected" in response.content
    admin.post(reverse("admin:secret_action", args=[world.secret.id, "unprotect"]))
    confirm_post(admin, reverse("admin:secret_action", args=[world.secret.id, "delete"]))
    world.secret.refresh_from_db()
    assert world.secret.deletion_requested_at is not None
    listing = admin.get(reverse("admin:secret_list") + "?status=scheduled_for_deletion").content.decode()
    assert "db-password" in listing
    admin.post(reverse("admin:secret_action", args=[world.secret.id, "restore"]))
    world.secret.refresh_from_db()
    assert world.secret.deletion_requested_at is None


def test_edit_moves_and_retags_a_secret(world, as_user):
    client = as_user("writer")
    url = reverse("admin:secret_edit", args=[world.secret.id])
    assert 'value="prod, db"' in client.get(url).content.decode()
    response = client.post(url, {"name": "db-password", "path": "/prod/bad path", "tags": "x", "description": "d"})
    assert b"segments must be" in response.content and b'value="/prod/bad path"' in response.content
    client.post(url, {"name": "db-main", "path": "/prod/databases", "tags": "prod, main", "description": "moved"})
    world.secret.refresh_from_db()
    assert (world.secret.name, world.secret.path, world.secret.tags) == ("db-main", "/prod/databases", ["prod", "main"])
