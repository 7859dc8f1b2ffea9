"""The principal cache: hits cost one generation read; every change of rights invalidates it at once."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework.test import APIClient

from hkms_core.access import cache as principals
from hkms_core.access import generation
from hkms_core.access.apikeys import api_key_create, api_key_revoke
from hkms_core.access.models import AccessGeneration, ApiKey
from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import role_grant, role_revoke

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])
OPERATOR = Principal.for_command()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # throttles
    principals.principal_cache_reset()
    yield
    principals.principal_cache_reset()


@pytest.fixture
def clock(monkeypatch):
    """A principal cache with an injected clock (10 s entries, 3 of them at most)."""
    fake = Clock()
    monkeypatch.setattr(principals, "_cache", principals.PrincipalCache(3, 10, clock=fake))
    return fake


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def token(alice):
    return api_key_create(principal=OPERATOR, user=alice).secret_key


def project_grants(entry, project) -> frozenset[str]:
    from django.contrib.contenttypes.models import ContentType

    ct = ContentType.objects.get_for_model(project).id
    return entry.grants.get((ct, str(project.pk)), frozenset())


def test_a_hit_costs_one_primary_key_read(token):
    assert principals.principal_authenticate(token) is not None
    with CaptureQueriesContext(connection) as queries:
        entry = principals.principal_authenticate(token)
    assert entry is not None and entry.api_key.user.username == "alice"
    assert len(queries) == 1 and "accessgeneration" in queries[0]["sql"].lower()


def test_api_requests_use_the_cache_and_agree_with_it(token):
    client = APIClient(HTTP_X_AUTH_TOKEN=token)
    assert client.get("/api/whoami").json()["user"] == "alice"
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/whoami").status_code == 200
    assert len(queries) == 1


def test_revoked_key_stops_working_on_the_next_request(token, alice):
    client = APIClient(HTTP_X_AUTH_TOKEN=token)
    assert client.get("/api/whoami").status_code == 200
    api_key_revoke(principal=OPERATOR, access_key=ApiKey.objects.get(user=alice).access_key)
    assert principals.principal_authenticate(token) is None
    assert client.get("/api/whoami").status_code == 401


def test_role_revoke_drops_the_cached_grants(token, alice, project):
    role_grant(principal=OPERATOR, user=alice, role="secret_reader", obj=project)
    assert Action.SECRET_READ in project_grants(principals.principal_authenticate(token), project)
    role_revoke(principal=OPERATOR, user=alice, role="secret_reader", obj=project)
    assert project_grants(principals.principal_authenticate(token), project) == frozenset()


def test_role_grant_is_seen_on_the_next_request(token, alice, project):
    assert project_grants(principals.principal_authenticate(token), project) == frozenset()
    role_grant(principal=OPERATOR, user=alice, role="secret_reader", obj=project)
    assert Action.SECRET_READ in project_grants(principals.principal_authenticate(token), project)


def test_permission_changed_outside_the_services_invalidates_too(token, alice, project):
    assign_perm(str(Action.SECRET_READ), alice, project)  # e.g. the admin's object permissions page
    assert Action.SECRET_READ in project_grants(principals.principal_authenticate(token), project)
    remove_perm(str(Action.SECRET_READ), alice, project)
    assert project_grants(principals.principal_authenticate(token), project) == frozenset()


def test_user_deactivation_stops_every_key_of_the_user(token, alice):
    assert principals.principal_authenticate(token) is not None
    alice.is_active = False
    alice.save()
    assert principals.principal_authenticate(token) is None
    assert APIClient(HTTP_X_AUTH_TOKEN=token).get("/api/whoami").status_code == 401


def test_superuser_flag_change_is_seen_at_once(token, alice):
    assert not principals.principal_authenticate(token).api_key.user.is_superuser
    alice.is_superuser = True
    alice.save()
    assert principals.principal_authenticate(token).api_key.user.is_superuser


def test_a_login_does_not_invalidate(token, alice):
    principals.principal_authenticate(token)
    before = principals.access_generation()
    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])
    assert principals.access_generation() == before


def test_a_bump_from_another_process_invalidates(token, alice):
    """Other processes only share the database: a bump there is all this process sees."""
    entry = principals.principal_authenticate(token)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)  # no signal: not seen yet
    assert principals.principal_authenticate(token) is entry
    AccessGeneration.objects.filter(id=1).update(value=entry.generation + 1)  # what their bump writes
    assert principals.principal_authenticate(token) is None


def test_changes_that_bypass_the_generation_last_at_most_max_age(clock, token, alice):
    assert principals.principal_authenticate(token) is not None
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)  # bulk update: no signal
    clock.now += 9
    assert principals.principal_authenticate(token) is not None
    clock.now += 2  # past 10 s
    assert principals.principal_authenticate(token) is None


def test_expiry_is_checked_on_every_hit(alice):
    issued = api_key_create(principal=OPERATOR, user=alice, expires_in=timedelta(minutes=5))
    assert principals.principal_authenticate(issued.secret_key) is not None
    later = timezone.now() + timedelta(minutes=6)
    with mock.patch("hkms_core.access.models.timezone.now", return_value=later):
        assert principals.principal_authenticate(issued.secret_key) is None


def test_the_cache_is_bounded(clock, alice):
    tokens = [api_key_create(principal=OPERATOR, user=alice).secret_key for _ in range(5)]
    for token in tokens:
        assert principals.principal_authenticate(token) is not None
    assert len(principals.principal_cache()) == 3


def test_bad_tokens_are_not_cached(alice):
    assert principals.principal_authenticate("not-a-uuid") is None
    assert principals.principal_authenticate("9b2f1c9e-0f55-4f43-9d3c-4f4f4f4f4f4f") is None
    assert len(principals.principal_cache()) == 0


def test_a_missing_generation_row_is_recreated(token):
    AccessGeneration.objects.all().delete()
    assert principals.access_generation() == 0
    generation.access_generation_bump()
    assert principals.access_generation() == 1


def test_size_zero_disables_the_cache(settings, token):
    settings.HKMS_PRINCIPAL_CACHE_SIZE = 0
    principals.principal_cache_reset()
    assert principals.principal_authenticate(token) is not None
    assert len(principals.principal_cache()) == 0
    with CaptureQueriesContext(connection) as queries:
        principals.principal_authenticate(token)
    assert len(queries) == 2  # key and user, grants: no generation read
