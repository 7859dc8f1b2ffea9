"""API throttles: fixed-window counters per user (authenticated) and per client address (anonymous).

The (rate+1)-th request of a window answers 429 in Scaleway's shape with a Retry-After of the
seconds left in the window; the next window starts from zero; users and addresses count apart.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.api import throttling
from hkms_core.api.throttling import FixedWindowThrottle, PrincipalThrottle, parse_rate

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default"])]
WHOAMI = "/api/whoami"
DOCS = "/api/docs/"  # needs no authentication: the anonymous (per address) throttle's business


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(6000.0)  # a minute boundary (6000 = 100 x 60)
    monkeypatch.setattr(FixedWindowThrottle, "timer", staticmethod(fake))
    return fake


@pytest.fixture
def rates(settings):
    def set_rates(anon: str = "1000/minute", user: str = "1000/minute") -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": anon, "user": user}}

    return set_rates


def client_of(name: str) -> APIClient:
    user = get_user_model().objects.create_user(name)
    issued = api_key_create(principal=Principal.for_command(), user=user)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client


def test_the_request_after_the_rate_is_429_in_scaleway_shape_with_retry_after(clock, rates):
    rates(user="5/minute")
    alice = client_of("alice")
    clock.now = 6000.0 + 17.4  # 42.6 s left in the window
    assert [alice.get(WHOAMI).status_code for _ in range(5)] == [200] * 5
    refused = alice.get(WHOAMI)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "43"  # whole seconds, rounded up
    assert refused.json() == {
        "type": "quotas_exceeded",
        "message": "too many requests; retry later",
        "details": [{"resource": "requests", "wait": 43}],
    }
    assert alice.get(WHOAMI).status_code == 429  # still refused until the window ends


def test_a_new_window_starts_from_zero(clock, rates):
    rates(user="3/second")
    alice = client_of("alice")
    assert [alice.get(WHOAMI).status_code for _ in range(4)] == [200, 200, 200, 429]
    clock.now += 0.999  # same second
    assert alice.get(WHOAMI).status_code == 429
    clock.now += 0.001  # the next one
    assert [alice.get(WHOAMI).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_users_count_apart(clock, rates):
    rates(user="2/minute")
    alice, bob = client_of("alice"), client_of("bob")
    assert [alice.get(WHOAMI).status_code for _ in range(3)] == [200, 200, 429]
    assert [bob.get(WHOAMI).status_code for _ in range(3)] == [200, 200, 429]


def test_all_keys_of_a_user_share_the_users_count(clock, rates):
    rates(user="2/minute")
    user = get_user_model().objects.create_user("carol")
    clients = []
    for _ in range(2):
        issued = api_key_create(principal=Principal.for_command(), user=user)
        client = APIClient()
        client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
        clients.append(client)
    assert [c.get(WHOAMI).status_code for c in clients] == [200, 200]
    assert [c.get(WHOAMI).status_code for c in clients] == [429, 429]


def test_anonymous_requests_are_counted_per_address(clock, rates):
    rates(anon="2/minute", user="2/minute")
    anon = APIClient(REMOTE_ADDR="192.0.2.1")
    assert [anon.get(DOCS).status_code for _ in range(3)] == [200, 200, 429]
    assert anon.get(DOCS)["Retry-After"] == "60"
    assert APIClient(REMOTE_ADDR="192.0.2.2").get(DOCS).status_code == 200  # another address
    # An authenticated caller from the throttled address counts against its user, not the address.
    alice = client_of("alice")
    assert alice.get(WHOAMI, REMOTE_ADDR="192.0.2.1").status_code == 200
    clock.now += 60
    assert anon.get(DOCS).status_code == 200


def test_the_counter_is_one_small_cache_entry_whatever_the_rate(clock, rates):
    rates(user="100000/minute")
    alice = client_of("alice")
    for _ in range(20):
        assert alice.get(WHOAMI).status_code == 200
    keys = [k for k in cache._cache if "throttle:user:" in k]  # type: ignore[attr-defined]
    assert len(keys) == 1
    assert cache.get(keys[0].split(":", 2)[2]) == 20  # the stored key is ":<version>:<key>"


def test_concurrent_requests_are_all_counted(clock, rates):
    """Threads of one worker (gthread) share the process's counter; incr is atomic there."""
    rates(user="1000/minute")

    class User:
        pk = 7
        is_authenticated = True

    class Request:
        user = User()

    allowed: list[bool] = []

    def hit() -> None:
        for _ in range(100):
            allowed.append(PrincipalThrottle().allow_request(Request(), None))
        connections.close_all()

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 800  # within the rate: nobody refused, no count lost
    assert cache.get(f"throttle:user:7:{6000}") == 800
    throttle = PrincipalThrottle()
    for _ in range(200):
        throttle.allow_request(Request(), None)
    assert cache.get(f"throttle:user:7:{6000}") == 1000
    assert throttle.allow_request(Request(), None) is False and throttle.wait() == 60


def test_an_evicted_counter_starts_again(clock, rates):
    rates(user="2/minute")
    alice = client_of("alice")
    assert [alice.get(WHOAMI).status_code for _ in range(3)] == [200, 200, 429]
    cache.clear()
    assert alice.get(WHOAMI).status_code == 200


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("60/minute", (60, 60)),
        ("2000/second", (2000, 1)),
        ("100000/minute", (100000, 60)),
        ("5/h", (5, 3600)),
        ("1/day", (1, 86400)),
        ("10/s", (10, 1)),
    ],
)
def test_rates_are_read_like_drf(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["60", "x/minute", "60/fortnight", "60/", "-1/minute"])
def test_a_malformed_rate_is_a_configuration_error(rate):
    with pytest.raises(ImproperlyConfigured):
        parse_rate(rate)


def test_no_rate_means_no_throttle(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}}
    assert throttling.PrincipalThrottle().allow_request(object(), None) is True


def test_token_guessing_429_has_the_same_shape_and_retry_after(settings):
    """The failed-token counter (ApiKeyAuthentication) is a counter too, not a list of times."""
    settings.HKMS_AUTH_FAILURES_PER_MINUTE = 2
    guesser = APIClient(REMOTE_ADDR="192.0.2.9")
    statuses = [guesser.get(WHOAMI, HTTP_X_AUTH_TOKEN="SCW-wrong").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    refused = guesser.get(WHOAMI, HTTP_X_AUTH_TOKEN="SCW-wrong")
    assert 1 <= int(refused["Retry-After"]) <= 60  # what is left of the minute
    assert refused.json()["type"] == "quotas_exceeded"
    assert len([key for key in cache._cache if "hkms:auth-failures:192.0.2.9:" in key]) == 1  # one counter
