"""What an attacker tries against the console: open redirects, CSRF, reveals by GET,
model admin pages without being a superuser, and filters that crash pages."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from secrets_app.models import Secret
from tests.console.conftest import password_of

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])
OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example",
    "/\\/evil.example",
    "https:evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(client, world, target):
    response = client.post(
        f"{reverse('admin:login')}?next={target}",
        {"username": "reader", "password": password_of("reader"), "next": target},
    )
    assert response.status_code == 302
    assert response["Location"].startswith("/") and not response["Location"].startswith("//")
    assert "evil" not in response["Location"] and "javascript" not in response["Location"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_action_buttons_never_redirect_off_site(as_user, world, target):
    """Regression: ``next=/\\evil.example`` passed the "starts with / but not //" check,
    and browsers read the backslash as a slash."""
    client = as_user("padmin")
    url = reverse("admin:secret_action", args=[world.secret.id, "protect"])
    response = client.post(url, {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:secret_detail", args=[world.secret.id])
    assert client.post(url, {"next": "/admin/keys/?name=x"})["Location"] == "/admin/keys/?name=x"


def test_model_admin_pages_are_for_superusers_only(as_user, world):
    client = as_user("padmin")
    for url in [
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{world.users['admin'].pk}/change/",
        "/admin/auth/group/",
        "/admin/secrets_app/secret/",
        f"/admin/secrets_app/secret/{world.secret.id}/change/",
        "/admin/tenancy/project/",
        "/admin/keys_app/key/",
        "/admin/audit/auditevent/",
        "/admin/access/apikey/",
    ]:
        response = client.get(url)
        assert response.status_code in (302, 403, 404), (url, response.status_code)
        assert b"s3cr3t" not in response.content


def test_a_reveal_needs_a_post_with_a_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["reader"])
    url = reverse("admin:secret_version_reveal", args=[world.secret.id, 1])
    response = client.get(url)
    assert response.status_code == 200 and b"s3cr3t" not in response.content
    response = client.post(url)
    assert response.status_code == 403 and b"s3cr3t" not in response.content
    other = Client(enforce_csrf_checks=True)
    other.force_login(world.users["padmin"])
    assert other.post(reverse("admin:secret_action", args=[world.secret.id, "delete"])).status_code == 403
    assert Secret.objects.get(id=world.secret.id).deletion_requested_at is None


def test_another_projects_secret_cannot_be_revealed(as_user, world):
    client = as_user("other")
    url = reverse("admin:secret_version_reveal", args=[world.secret.id, 1])
    assert client.get(url).status_code == 404
    response = client.post(url)
    assert response.status_code == 404 and b"s3cr3t" not in response.content


@pytest.mark.parametrize(
    "url",
    [
        "/admin/keys/?name=a%00b",
        "/admin/secrets/?name=a%00b",
        "/admin/secrets/?path=%00",
        "/admin/secrets/?tag=%00",
        "/admin/audit-log/?actor=%00",
        "/admin/roles/?target=%00",
        "/admin/secrets_app/secret/?q=%00",
        "/admin/keys_app/key/?q=%00",
        "/admin/audit/auditevent/?q=%00",
    ],
)
def test_a_nul_in_a_console_filter_is_not_a_server_error(as_user, world, url):
    """Regression: ``/admin/keys/?name=a%00b`` raised the service's ``InvalidArgument`` (500)."""
    for name in ("admin", "padmin"):
        response = as_user(name).get(url)
        assert response.status_code < 500, (name, url, response.status_code)
