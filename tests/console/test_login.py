"""Console login: session + CSRF, throttling per (username, address), audit, logout, TOTP."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from hkms_core.audit.models import AuditEvent
from tests.console.conftest import password_of

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def _login(client, username, password, token="", ip="10.0.0.1"):
    data = {"username": username, "password": password, "otp_token": token}
    return client.post(reverse("admin:login"), data, REMOTE_ADDR=ip)


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_login_lands_on_the_dashboard_and_is_audited(client, world):
    response = _login(client, "reader", password_of("reader"))
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200
    event = _events("auth.login")[-1]
    assert (event.actor, event.outcome, event.source_ip, event.via) == ("reader", "allowed", "10.0.0.1", "console")


def test_login_page_needs_csrf(world):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("admin:login"), {"username": "reader", "password": password_of("reader")})
    assert response.status_code == 403


def test_bad_password_is_refused_inline_audited_and_never_recorded(client, world):
    response = _login(client, "reader", "wrong-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert b'value="reader"' in response.content  # the username is kept
    event = _events("auth.login")[-1]
    assert event.outcome == "denied" and event.detail["reason"] == "bad_credentials"
    assert "wrong-password" not in str(event.detail)


def test_failed_logins_are_throttled_per_username_and_address(client, world, settings):
    settings.HKMS_LOGIN_FAILURES_LIMIT = 3
    for _ in range(3):
        _login(client, "reader", "nope")
    response = _login(client, "reader", password_of("reader"))
    assert b"Too many failed attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert _events("auth.login")[-1].detail["reason"] == "throttled"
    # Another address, or another user from the same address, is not locked out.
    assert _login(Client(), "reader", password_of("reader"), ip="10.9.9.9").status_code == 302
    assert _login(Client(), "writer", password_of("writer")).status_code == 302


def test_logout_is_post_only_and_audited(client, world):
    _login(client, "reader", password_of("reader"))
    assert client.get(reverse("admin:logout")).status_code == 405
    response = client.post(reverse("admin:logout"))
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 302  # back to the login page
    assert _events("auth.logout")[-1].actor == "reader"


def test_anonymous_is_sent_to_login(client, world):
    for name in ("admin:index", "admin:secret_list", "admin:key_list", "admin:audit_log", "admin:roles"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def _code(device: TOTPDevice, offset: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0 - offset * device.step, digits=device.digits):06d}"


def test_totp_enrolment_then_login_needs_the_code(client, world):
    client.force_login(world.users["writer"])
    page = client.get(reverse("admin:two_factor") + "?enrol=1")
    assert b"<svg" in page.content  # the QR code, inline
    device = TOTPDevice.objects.get(user=world.users["writer"], confirmed=False)
    response = client.post(reverse("admin:two_factor"), {"step": "confirm", "token": "000000"})
    assert b"not valid" in response.content
    response = client.post(reverse("admin:two_factor"), {"step": "confirm", "token": _code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert [e.outcome for e in _events("auth.2fa.enable")] == ["denied", "allowed"]
    client.post(reverse("admin:logout"))

    response = _login(client, "writer", password_of("writer"))
    assert b"Enter the 6-digit code" in response.content and "_auth_user_id" not in client.session
    response = _login(client, "writer", password_of("writer"), token="123456")
    assert b"not valid" in response.content
    assert _events("auth.login")[-1].detail["reason"] == "bad_otp"
    response = _login(client, "writer", password_of("writer"), token=_code(device, offset=1))
    assert response.status_code == 302
    assert _events("auth.login")[-1].detail["method"] == "password+totp"


def test_superusers_must_enrol_when_2fa_is_required(client, world, settings):
    settings.HKMS_REQUIRE_2FA = True
    _login(client, "admin", password_of("admin"))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response["Location"] == reverse("admin:two_factor")
    assert client.get(reverse("admin:secret_list")).status_code == 302
    assert client.get("/api/whoami").status_code == 403  # no way around it through the API session
    page = client.get(reverse("admin:two_factor"))
    assert b"required for your account" in page.content
    device = TOTPDevice.objects.get(user=world.users["admin"])
    client.post(reverse("admin:two_factor"), {"step": "confirm", "token": _code(device)})
    assert client.get(reverse("admin:index")).status_code == 200
    # ... and cannot turn it off again.
    response = client.post(reverse("admin:two_factor"), {"step": "disable", "token": _code(device, offset=1)})
    assert b"mandatory" in response.content
    # Other users are not forced.
    other = Client()
    _login(other, "reader", password_of("reader"))
    assert other.get(reverse("admin:index")).status_code == 200


def test_every_console_response_has_a_csp_without_inline_script(client, world):
    client.force_login(world.users["admin"])
    for name in ("admin:index", "admin:roles", "admin:api_keys", "admin:audit_log", "admin:two_factor"):
        response = client.get(reverse(name))
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", response.content), name
        assert "no-store" in response["Cache-Control"]
    login_page = Client().get(reverse("admin:login"))
    assert "Content-Security-Policy" in login_page
