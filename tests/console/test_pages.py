"""What each role sees on the console pages, and the actions that need no other service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hkms_core.audit.models import AuditEvent
from keys_app.models import Dek, KekVersion, Key, RotationJob
from keys_app.services.material import key_create_with_material
from keys_app.services.rotation.kek import kek_rotate
from tests.console.conftest import confirm_post

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def test_dashboard_shows_only_visible_keys_and_audit_for_auditors(world, as_user):
    page = as_user("keyadmin").get(reverse("admin:index")).content.decode()
    assert str(world.key.id) in page and str(world.other_key.id) not in page
    assert 'id="recent-audit"' not in page  # not an auditor
    page = as_user("auditor").get(reverse("admin:index")).content.decode()
    assert 'id="recent-audit"' in page and "chain verified" in page
    page = as_user("stranger").get(reverse("admin:index")).content.decode()
    assert str(world.key.id) not in page and str(world.other_key.id) not in page
    assert 'id="recent-audit"' not in page
    page = as_user("admin").get(reverse("admin:index")).content.decode()
    assert str(world.key.id) in page and str(world.other_key.id) in page
    assert "<svg" in page and 'class="bar bar-primary"' in page


def test_navigation_hides_what_a_role_cannot_use(world, as_user):
    def nav(user):
        return as_user(user).get(reverse("admin:index")).content.decode()

    assert 'data-nav="audit"' not in nav("reader") and 'data-nav="roles"' not in nav("reader")
    assert 'data-nav="audit"' in nav("auditor") and 'data-nav="roles"' not in nav("auditor")
    assert 'data-nav="roles"' in nav("sadmin") and 'data-nav="roles"' in nav("keyadmin")
    admin_nav = nav("admin")
    assert 'data-nav="audit"' in admin_nav and 'data-nav="roles"' in admin_nav


def test_secret_list_shows_only_visible_secrets_and_never_payloads(world, as_user):
    for user, sees in [
        ("reader", {"db-password"}),
        ("other", {"globex-token"}),
        ("admin", {"db-password", "globex-token"}),
        ("stranger", set()),
        ("keyadmin", set()),
    ]:
        page = as_user(user).get(reverse("admin:secret_list") + "?q=o").content.decode()
        for name in ("db-password", "globex-token"):
            assert (name in page) == (name in sees), (user, name)
        assert "s3cr3t-payload" not in page


def test_secret_filters_and_folders(world, as_user, make_secret):
    make_secret(b"a", name="cache", path="/prod/cache", tags=["prod"])
    make_secret(b"b", name="dev-db", path="/dev", tags=["dev", "db"], type="key_value")
    client = as_user("reader")
    root = client.get(reverse("admin:secret_list")).content.decode()
    assert 'data-folder="/prod/"' in root and 'data-folder="/dev/"' in root and "db-password" not in root
    prod = client.get(reverse("admin:secret_list") + "?path=/prod/").content.decode()
    assert 'data-folder="/prod/db/"' in prod and 'data-folder="/prod/cache/"' in prod
    leaf = client.get(reverse("admin:secret_list") + "?path=/prod/db/").content.decode()
    assert "db-password" in leaf and "cache" not in leaf.split('id="secrets"')[1]

    def names(query):
        page = client.get(reverse("admin:secret_list") + "?" + query).content.decode()
        table = page.split('id="secrets"')[1]
        return {n for n in ("db-password", "cache", "dev-db") if f">{n}</a>" in table}

    assert names("tags=db") == {"db-password", "dev-db"}
    assert names("tags=db,prod") == {"db-password"}
    assert names("type=key_value") == {"dev-db"}
    assert names("q=cache") == {"cache"}
    assert names(f"project={world.project.id}&q=d") == {"db-password", "dev-db"}


def test_secret_detail_shows_history_but_no_payload_and_no_reveal_for_auditors(world, as_user):
    url = reverse("admin:secret_detail", args=[world.secret.id])
    reader_page = as_user("reader").get(url).content.decode()
    assert 'data-action="reveal"' in reader_page and "s3cr3t-payload" not in reader_page
    auditor_page = as_user("auditor").get(url).content.decode()
    assert 'data-revision="1"' in auditor_page
    assert 'data-action="reveal"' not in auditor_page and "s3cr3t-payload" not in auditor_page
    assert 'data-action="disable"' not in auditor_page and 'id="protect"' not in auditor_page
    writer_page = as_user("writer").get(url).content.decode()
    assert 'data-action="disable"' in writer_page and 'id="protect"' not in writer_page
    assert 'data-action="reveal"' not in writer_page
    assert 'id="protect"' in as_user("sadmin").get(url).content.decode()


def test_model_admin_is_for_superusers_and_never_shows_payloads(world, as_user):
    change = reverse("admin:secrets_app_secret_change", args=[world.secret.id])
    page = as_user("admin").get(change)
    assert page.status_code == 200 and b"s3cr3t-payload" not in page.content
    assert (
        as_user("admin").get(reverse("admin:secrets_app_secret_permissions", args=[world.secret.id])).status_code == 200
    )
    assert as_user("sadmin").get(change).status_code in (302, 403)
    assert as_user("reader").get(reverse("admin:tenancy_project_changelist")).status_code in (302, 403)


def test_key_detail_shows_versions_and_admin_actions_to_key_admins_only(world, as_user):
    url = reverse("admin:key_detail", args=[world.key.id])
    page = as_user("keyadmin").get(url).content.decode()
    assert 'id="rotate"' in page and 'data-version="1"' in page
    page = as_user("keyuser").get(url).content.decode()
    assert 'data-version="1"' in page and 'id="rotate"' not in page
    page = as_user("auditor").get(url).content.decode()
    assert 'id="rotate"' not in page


def test_rewrap_from_the_console_runs_the_resumable_job(world, as_user):
    kek_rotate(key=world.key)
    assert Dek.objects.using("dek").filter(key_id=world.key.id, kek_version=1).count() == 1
    url = reverse("admin:key_action", args=[world.key.id, "rewrap"])
    assert as_user("keyuser").post(url).status_code == 403
    assert as_user("reader").post(url).status_code == 404
    response = as_user("keyadmin").post(url)
    assert response.status_code == 302
    assert not Dek.objects.using("dek").filter(key_id=world.key.id, kek_version=1).exists()
    job = RotationJob.objects.using("kek").get(kind="rewrap_deks", scope=f"key:{world.key.id}")
    assert job.state == "done" and job.processed == 1
    assert KekVersion.objects.using("kek").get(key_id=world.key.id, version=1).state == "retired"
    page = as_user("keyadmin").get(reverse("admin:key_detail", args=[world.key.id])).content.decode()
    assert 'id="rewrap-job"' in page and "1/1" in page
    events = AuditEvent.objects.filter(action="key.rewrap_deks").values_list("actor", "outcome")
    assert ("keyadmin", "allowed") in set(events) and ("keyuser", "denied") in set(events)


def test_rotation_policy_form_saves_and_shows_service_errors_inline(world, as_user):
    url = reverse("admin:key_policy", args=[world.key.id])
    client = as_user("keyadmin")
    response = client.post(url, {"rotation_period_hours": "", "next_rotation_at": "2030-01-01 10:00"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-field="rotation_period_hours"' in page and "is required with next_rotation_at" in page
    assert 'value="2030-01-01 10:00' in page  # what was typed is kept
    response = client.post(url, {"rotation_period_hours": "2", "next_rotation_at": ""})
    assert b"greater than or equal to 24" in response.content
    response = client.post(url, {"rotation_period_hours": "48", "next_rotation_at": ""})
    assert response.status_code == 302
    world.key.refresh_from_db()
    assert world.key.rotation_period.total_seconds() == 48 * 3600 and world.key.next_rotation_at is not None


def test_key_actions_go_through_the_key_services(world, as_user):
    client = as_user("keyadmin")

    def act(action):
        url = reverse("admin:key_action", args=[world.key.id, action])
        if action in ("disable", "delete"):  # through the confirmation page
            return client.get(confirm_post(client, url)["Location"])
        return client.post(url, follow=True)

    act("rotate")
    world.key.refresh_from_db()
    assert world.key.primary_version == 2
    act("disable")
    world.key.refresh_from_db()
    assert world.key.state == "disabled"
    act("enable")
    response = act("delete")  # protected (and the default key): a message, nothing changes
    world.key.refresh_from_db()
    assert world.key.state == "enabled" and b'<li class="error">' in response.content

    spare = key_create_with_material(project=world.project, name="spare")
    spare_client_url = reverse("admin:key_action", args=[spare.id, "delete"])
    response = client.get(confirm_post(client, spare_client_url)["Location"])  # protected by default
    spare.refresh_from_db()
    assert spare.state == "enabled" and b"protected" in response.content
    client.post(reverse("admin:key_action", args=[spare.id, "unprotect"]))
    confirm_post(client, spare_client_url)
    spare.refresh_from_db()
    assert spare.state == "scheduled_for_deletion"
    listing = client.get(reverse("admin:key_list")).content.decode()
    assert 'id="keys-scheduled"' in listing and str(spare.id) in listing
    client.post(reverse("admin:key_action", args=[spare.id, "restore"]))
    spare.refresh_from_db()
    assert spare.state == "enabled"
    actions = set(AuditEvent.objects.filter(actor="keyadmin").values_list("action", flat=True))
    assert {"key.rotate", "key.disable", "key.enable", "key.unprotect", "key.delete", "key.restore"} <= actions


def test_create_a_key_with_a_rotation_policy(world, as_user):
    client = as_user("keyadmin")
    form = client.get(reverse("admin:key_create")).content.decode()
    assert 'value="aes_256_gcm" selected' in form and 'id="id_protected" checked' in form
    response = client.post(
        reverse("admin:key_create"),
        {"project": str(world.project.id), "name": "bad\x00name", "algorithm": "aes_256_gcm"},
    )
    assert response.status_code == 200 and b"errorlist" in response.content
    response = client.post(
        reverse("admin:key_create"),
        {
            "project": str(world.project.id),
            "name": "payments-kek",
            "algorithm": "aes_256_gcm",
            "rotation_period_hours": "720",
        },
    )
    key = Key.objects.get(name="payments-kek")
    assert response["Location"] == reverse("admin:key_detail", args=[key.id])
    assert not key.protected and key.rotation_period.days == 30 and key.next_rotation_at is not None
