"""Guarded destruction in the console: every destructive or availability-changing action goes
through a confirmation page naming what stops working, and a POST without that page's token
changes nothing.  Also: projects in the console, the New secret form's first value, the Root
key page under the ``file`` provider."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hkms_core.access.models import ApiKey, RoleGrant
from hkms_core.audit.models import AuditEvent
from hkms_core.tenancy.models import Project
from secrets_app.models import Secret
from tests.console.conftest import confirm_post, confirm_token_of

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def _state(world):
    world.key.refresh_from_db()
    world.secret.refresh_from_db()
    return {
        "key": world.key.state,
        "secret": world.secret.deletion_requested_at,
        "v1": world.secret.versions.get(revision=1).status,
        "api_key": ApiKey.objects.get(access_key=world.reader_api_key).revoked_at,
        "grants": RoleGrant.objects.count(),
    }


def _actions(world):
    """(user, url, extra POST data, words the confirmation page must show)."""
    secret, key = world.secret, world.key
    grant = RoleGrant.objects.get(user=world.users["reader"])
    return [
        ("keyadmin", reverse("admin:key_action", args=[key.id, "disable"]), {}, ["1 secret (1 version, 1 enabled)"]),
        ("keyadmin", reverse("admin:key_action", args=[key.id, "delete"]), {}, ["1 secret", "crypto-shredded"]),
        ("writer", reverse("admin:secret_version_action", args=[secret.id, 1, "disable"]), {}, ["only enabled"]),
        ("sadmin", reverse("admin:secret_version_action", args=[secret.id, 1, "delete"]), {}, ["revision 1"]),
        ("sadmin", reverse("admin:secret_action", args=[secret.id, "delete"]), {}, ["1 version (1 enabled)"]),
        ("reader", reverse("admin:api_key_revoke", args=[world.reader_api_key]), {}, ["401"]),
        ("padmin", reverse("admin:role_revoke"), {"grant": grant.pk}, ["reader loses", "secret_reader"]),
    ]


def test_no_destruction_without_the_confirmation_token(world, as_user):
    before = _state(world)
    for user, url, data, _words in _actions(world):
        client = as_user(user)
        response = client.post(url, data)  # the old one-click button
        assert response.status_code == 200, url
        page = response.content.decode()
        assert 'id="confirm-required"' in page and confirm_token_of(response), url
        forged = client.post(url, {**data, "confirm_token": "1"})  # a made-up token
        assert 'id="confirm-required"' in forged.content.decode(), url
    assert _state(world) == before


def test_each_confirmation_page_names_what_stops_working(world, as_user):
    for user, url, data, words in _actions(world):
        page = as_user(user).get(url, data).content.decode()
        assert 'id="confirm-consequences"' in page, url
        for word in words:
            assert word in page, (url, word)
    assert _state(world)["key"] == "enabled"


def test_a_token_is_good_for_one_action_of_one_user(world, as_user):
    disable = reverse("admin:secret_version_action", args=[world.secret.id, 1, "disable"])
    delete = reverse("admin:secret_version_action", args=[world.secret.id, 1, "delete"])
    token = confirm_token_of(as_user("sadmin").get(disable))
    assert token
    as_user("sadmin").post(delete, {"confirm_token": token})  # another action
    as_user("padmin").post(disable, {"confirm_token": token})  # another user
    assert world.secret.versions.get(revision=1).status == "enabled"
    as_user("sadmin").post(disable, {"confirm_token": token})
    assert world.secret.versions.get(revision=1).status == "disabled"


def test_confirmed_actions_take_effect_and_are_audited(world, as_user):
    for user, url, data, _words in _actions(world):
        if "delete" in url and "keys" in url:
            continue  # the default key: refused by the service (below)
        response = confirm_post(as_user(user), url, data)
        assert response.status_code == 302, url
    state = _state(world)
    assert state["key"] == "disabled" and state["secret"] is not None
    assert state["v1"] == "scheduled_for_deletion" and state["api_key"] is not None
    assert not RoleGrant.objects.filter(user=world.users["reader"]).exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"key.disable", "secret.version.disable", "secret.version.delete", "secret.delete"} <= actions
    assert {"api_key.revoke", "role.revoke"} <= actions
    revocations = AuditEvent.objects.filter(action="api_key.revoke").count()
    as_user("reader").get(reverse("admin:api_key_revoke", args=[world.reader_api_key]))  # a GET never acts
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == revocations


def test_someone_without_the_right_sees_no_confirmation_and_is_refused(world, as_user):
    url = reverse("admin:key_action", args=[world.key.id, "disable"])
    assert as_user("keyuser").get(url).status_code == 403  # may see the key, not disable it
    assert as_user("reader").get(url).status_code == 404  # may not see it
    assert as_user("keyuser").post(url).status_code == 403  # the service refuses (and records it)
    assert AuditEvent.objects.filter(action="key.disable", outcome="denied").exists()
    world.key.refresh_from_db()
    assert world.key.state == "enabled"


def test_root_key_page_speaks_for_the_file_provider(world, as_user, settings):
    settings.HKMS_ROOT_KEY_PROVIDER = "file"
    page = as_user("admin").get(reverse("admin:custody")).content.decode()
    assert "development provider" in page and "cannot be sealed" in page
    assert 'id="seal"' not in page and "seal keeper" not in page
    response = as_user("admin").get(reverse("admin:custody_seal"), follow=True)
    assert "cannot be sealed" in response.content.decode()
    assert as_user("sadmin").get(reverse("admin:custody")).status_code == 404


def test_projects_are_created_in_the_console_with_their_default_key(world, as_user):
    assert as_user("padmin").get(reverse("admin:project_new")).status_code == 403
    listing = as_user("padmin").get(reverse("admin:project_list")).content.decode()
    assert 'id="new-project"' not in listing and world.project.name in listing
    assert world.other_project.name not in listing
    admin = as_user("admin")
    response = admin.post(reverse("admin:project_new"), {"name": "  ", "description": "blank"})
    assert response.status_code == 200 and 'id="id_name_errors"' in response.content.decode()
    response = admin.post(reverse("admin:project_new"), {"name": "shop", "description": "the shop"})
    assert response.status_code == 302
    shop = Project.objects.get(name="shop")
    assert shop.default_key_id is not None
    assert AuditEvent.objects.filter(action="project.create", object_id=str(shop.id)).exists()
    assert 'data-name="shop"' in admin.get(reverse("admin:project_list")).content.decode()
    again = admin.post(reverse("admin:project_new"), {"name": "shop", "description": "twice"})
    assert again.status_code == 200 and 'class="errorlist' in again.content.decode()  # names are unique
    assert Project.objects.filter(name="shop").count() == 1


def test_new_secret_takes_its_first_value_and_never_echoes_it(world, as_user):
    client = as_user("writer")
    form = {
        "project": str(world.project.id),
        "name": "stripe",
        "path": "/prod/bad path!",
        "type": "opaque",
        "tags": "prod",
        "description": "payments",
        "key": "",
        "opaque-data": "sk_live_never_echoed",
        "opaque-description": "first",
    }
    response = client.post(reverse("admin:secret_create"), form)
    page = response.content.decode()
    assert response.status_code == 200 and 'id="id_path_errors"' in page and 'id="retype"' in page
    assert "sk_live_never_echoed" not in page and "payments</textarea>" in page
    assert 'value="stripe"' in page and "no-store" in response["Cache-Control"]
    assert not Secret.objects.filter(name="stripe").exists()
    response = client.post(reverse("admin:secret_create"), {**form, "path": "/prod/payments"})
    secret = Secret.objects.get(name="stripe")
    assert response.status_code == 302 and secret.version_count == 1
    reveal = as_user("padmin").post(reverse("admin:secret_version_reveal", args=[secret.id, 1]), {"confirm": "1"})
    assert "sk_live_never_echoed" in reveal.content.decode() and 'data-copy="payload"' in reveal.content.decode()


def test_one_navigation(world, as_user):
    page = as_user("admin").get(reverse("admin:index")).content.decode()
    assert 'id="nav-sidebar"' not in page
    for nav in ("projects", "secrets", "keys", "records", "custody"):
        assert f'data-nav="{nav}"' in page
    records = as_user("admin").get(reverse("admin:records")).content.decode()
    assert "tenancy/project/" in records
    assert as_user("reader").get(reverse("admin:records")).status_code == 404


def test_sealing_needs_its_confirmation(world, as_user, settings, monkeypatch):
    """With a sealable provider (shamir; its keeper replaced by fakes here) the Seal button leads
    to a confirmation; the custody page's own form can only unseal."""
    from hkms_core.errors import ObjectNotFound
    from hkms_site.console.views import custody as custody_views

    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    sealed: list[object] = []

    def status(principal):
        if not principal.is_superuser:  # what keys_app.services.custody does
            raise ObjectNotFound("endpoint", "root_key.seal_status")
        return {"sealed": False, "threshold": 2}

    monkeypatch.setattr(custody_views, "custody_status", status)
    monkeypatch.setattr(custody_views, "custody_seal", lambda principal: sealed.append(principal) or {})
    admin = as_user("admin")
    url = reverse("admin:custody_seal")
    assert 'id="seal"' in admin.get(reverse("admin:custody")).content.decode()
    assert 'id="confirm-required"' in admin.post(url).content.decode() and not sealed
    admin.post(reverse("admin:custody"), {"action": "seal"})  # the old seal form: now an (empty) unseal share
    assert not sealed
    assert "2 custodians" in admin.get(url).content.decode()
    assert confirm_post(admin, url).status_code == 302 and len(sealed) == 1
    assert as_user("sadmin").get(url).status_code == 404


def test_deleting_key_material_needs_its_confirmation(world, as_user):
    from keys_app.services.material import key_create_with_material

    key = key_create_with_material(project=world.project, name="imported", origin="external", protected=False)
    url = reverse("admin:key_action", args=[key.id, "delete_key_material"])
    page = as_user("keyadmin").get(reverse("admin:key_detail", args=[key.id])).content.decode()
    assert 'id="delete-key-material"' in page
    assert 'id="confirm-required"' in as_user("keyadmin").post(url).content.decode()
    key.refresh_from_db()
    assert key.state == "enabled"
    assert "Not reversible" in as_user("keyadmin").get(url).content.decode()
    confirm_post(as_user("keyadmin"), url)
    key.refresh_from_db()
    assert key.state == "pending_key_material"
