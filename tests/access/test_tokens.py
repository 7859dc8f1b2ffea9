"""X-Auth-Token authentication: one 401 for every bad token, audited, throttled, constant-time."""

from __future__ import annotations

import hmac
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create, api_key_revoke
from hkms_core.access.models import ApiKey
from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default"])]
URL = "/api/whoami"


@pytest.fixture
def issued(db):
    user = get_user_model().objects.create_user("app")
    return api_key_create(principal=Principal.for_command(), user=user)


def call(token: str | None):
    client = APIClient()
    headers = {"HTTP_X_AUTH_TOKEN": token} if token is not None else {}
    return client.get(URL, **headers)


def test_valid_token_authenticates(issued):
    response = call(issued.secret_key)
    assert response.status_code == 200
    assert response.json()["access_key"] == issued.api_key.access_key


def test_secret_is_stored_only_as_a_digest(issued):
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    values = [str(v) for v in ApiKey.objects.filter(pk=row.pk).values().first().values()]
    assert all(issued.secret_key not in v for v in values)
    assert issued.secret_key not in repr(row) and issued.secret_key not in repr(issued)


@pytest.mark.parametrize("kind", ["unknown", "malformed", "expired", "revoked", "missing"])
def test_every_bad_token_gets_the_same_401(issued, kind):
    token: str | None
    if kind == "unknown":
        token = str(uuid.uuid4())
    elif kind == "malformed":
        token = "SCW-not-a-secret"
    elif kind == "expired":
        ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        token = issued.secret_key
    elif kind == "revoked":
        api_key_revoke(principal=Principal.for_command(), access_key=issued.api_key.access_key)
        token = issued.secret_key
    else:
        token = None
    response = call(token)
    assert response.status_code == 401
    assert response.json() == {
        "type": "denied_authentication",
        "method": "api_key",
        "reason": "invalid_argument",
        "message": "authentication is denied",
    }
    if token is not None:
        event = AuditEvent.objects.filter(action="auth.api_key").last()
        assert event is not None and event.outcome == "denied"
        assert issued.secret_key not in str(event.detail)


def test_lookup_is_one_indexed_query_and_constant_time(issued):
    spy = mock.patch("hkms_core.access.apikeys.hmac.compare_digest", wraps=hmac.compare_digest)
    with spy as cmp, CaptureQueriesContext(connection) as queries:
        assert call(issued.secret_key).status_code == 200
    assert cmp.called
    lookups = [q["sql"] for q in queries.captured_queries if "access_apikey" in q["sql"]]
    assert len(lookups) == 1 and "secret_digest" in lookups[0]


def test_token_guessing_is_throttled(issued, settings):
    settings.HKMS_AUTH_FAILURES_PER_MINUTE = 5
    statuses = [call(str(uuid.uuid4())).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 3
    assert call(issued.secret_key).status_code == 200  # a valid key is never refused for others' failures
    assert call(str(uuid.uuid4())).json()["type"] == "quotas_exceeded"
