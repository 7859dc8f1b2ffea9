"""Failed-token throttling (issue 12 #6): failures from an address are throttled, valid keys from the
same address are not; the client address comes from X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default"])]
WHOAMI = "/api/whoami"


@pytest.fixture
def valid_token():
    user = get_user_model().objects.create_user("alice")
    return api_key_create(principal=Principal.for_command(), user=user).secret_key


def get(token: str, remote: str, xff: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": xff} if xff is not None else {}
    return APIClient(REMOTE_ADDR=remote).get(WHOAMI, HTTP_X_AUTH_TOKEN=token, **extra)


def test_a_valid_key_keeps_working_while_its_address_is_throttled(settings, valid_token):
    settings.HKMS_AUTH_FAILURES_PER_MINUTE = 3
    attacker = [get(str(uuid.uuid4()), "192.0.2.50").status_code for _ in range(6)]
    assert attacker == [401, 401, 401, 429, 429, 429]
    assert get(valid_token, "192.0.2.50").status_code == 200  # same address, valid key: served
    assert get(str(uuid.uuid4()), "192.0.2.50").status_code == 429  # further failures still refused
    assert get(valid_token, "192.0.2.50").status_code == 200
    denied = AuditEvent.objects.filter(action="auth.api_key", outcome=AuditEvent.Outcome.DENIED)
    assert denied.count() == 4  # three failures, and one "throttled" for the rest of the minute


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(settings):
    settings.HKMS_AUTH_FAILURES_PER_MINUTE = 2
    settings.HKMS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    statuses = [get(str(uuid.uuid4()), "192.0.2.60", xff=f"198.51.100.{i}").status_code for i in range(4)]
    assert statuses == [401, 401, 429, 429]  # a new forged address each time changes nothing
    event = AuditEvent.objects.filter(action="auth.api_key").order_by("-seq").first()
    assert event is not None and event.source_ip == "192.0.2.60"


def test_behind_a_trusted_proxy_clients_count_apart_and_cannot_pose_as_others(settings, valid_token):
    settings.HKMS_AUTH_FAILURES_PER_MINUTE = 2
    settings.HKMS_TRUSTED_PROXIES = ["10.0.0.0/8", "::1/128"]
    proxy = "10.0.0.1"
    attacker = [get(str(uuid.uuid4()), proxy, xff="203.0.113.9").status_code for _ in range(3)]
    assert attacker == [401, 401, 429]
    # Another client behind the same proxy is not locked out by the attacker...
    assert get(str(uuid.uuid4()), proxy, xff="203.0.113.10").status_code == 401
    assert get(valid_token, proxy, xff="203.0.113.9").status_code == 200  # ...nor is a valid key
    # The attacker writing someone else's address first gains nothing: the proxy appends the real peer.
    assert get(str(uuid.uuid4()), proxy, xff="203.0.113.77, 203.0.113.9").status_code == 429
    sources = set(AuditEvent.objects.filter(action="auth.api_key").values_list("source_ip", flat=True))
    assert sources == {"203.0.113.9", "203.0.113.10"}  # never the proxy, never the forged address


@pytest.mark.parametrize(
    ("trusted", "remote", "xff", "expected"),
    [
        ([], "10.0.0.1", "203.0.113.9", "10.0.0.1"),  # no trusted proxies: REMOTE_ADDR
        (["10.0.0.0/8"], "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # untrusted peer
        (["10.0.0.0/8"], "10.0.0.1", "203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/8"], "10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),  # two proxies
        (["10.0.0.0/8"], "10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the leftmost
        (["10.0.0.0/8"], "10.0.0.1", "", "10.0.0.1"),
        (["10.0.0.0/8"], "10.0.0.1", "junk, 203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/8"], "10.0.0.1", "203.0.113.9, junk", "10.0.0.1"),  # a trusted hop wrote junk: stop there
        (["10.0.0.0/8"], "10.0.0.1", "203.0.113.9:4711", "203.0.113.9"),
        (["::1/128"], "::1", "[2001:db8::5]:443", "2001:db8::5"),
    ],
)
def test_client_address(settings, trusted, remote, xff, expected):
    from hkms_core.api.throttling import client_address

    settings.HKMS_TRUSTED_PROXIES = trusted
    request = SimpleNamespace(META={"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": xff})
    assert client_address(request) == expected
