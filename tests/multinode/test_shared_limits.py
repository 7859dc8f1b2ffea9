"""Limits hold across worker processes through the shared cache (HKMS_CACHE_URL=redis://…): a
2-worker server counts one failed-token limit and one per-user limit, not one per worker, and a
valid key from an address whose failures are throttled keeps working."""

from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest

from tests.live import LiveServer

FAILURES, USER_RATE = 5, 8


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except Exception:
        return False


def call(server: LiveServer, token: str) -> int:
    """One request on a fresh connection (so the two workers take turns accepting them)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/api/whoami", headers={"X-Auth-Token": token, "Connection": "close"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if not redis_available():
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (start it: see docs/deployment.md)")
    prefix = f"hkms-test-{uuid.uuid4().hex[:12]}"
    server = LiveServer(
        tmp_path_factory.mktemp("shared-limits"),
        workers=2,
        extra_env={
            "HKMS_CACHE_URL": "redis://127.0.0.1:6379/0",
            "HKMS_CACHE_KEY_PREFIX": prefix,
            "HKMS_AUTH_FAILURES_PER_MINUTE": str(FAILURES),
            "HKMS_THROTTLE_USER": f"{USER_RATE}/minute",
        },
    ).start()
    yield server
    server.stop()
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def _not_at_a_minute_boundary() -> None:
    """Counters are per minute: start a burst with enough of the minute left for it."""
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.2)


def test_one_limit_across_workers_and_valid_keys_keep_working(redis_server):
    credentials = redis_server.create_api_key("--user", "shared-limits-user", "--create-user")
    token = credentials["secret_key"]
    _not_at_a_minute_boundary()
    guesses = [call(redis_server, str(uuid.uuid4())) for _ in range(3 * FAILURES)]
    assert guesses == [401] * FAILURES + [429] * (2 * FAILURES), guesses  # per worker it would be 2 x 5
    served = [call(redis_server, token) for _ in range(2 * USER_RATE)]  # from the throttled address
    assert served == [200] * USER_RATE + [429] * USER_RATE, served
    assert call(redis_server, str(uuid.uuid4())) == 429


def test_health_reports_the_databases(redis_server):
    conn = http.client.HTTPConnection("127.0.0.1", redis_server.port, timeout=10)
    conn.request("GET", "/health/ready")
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200 and body["databases"] == {"default": "ok", "kek": "ok", "dek": "ok"}
    assert body["root_key"]["available"] is True
