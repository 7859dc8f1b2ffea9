"""/metrics: protected by a bearer token, Prometheus text that prometheus_client's own parser reads,
counting requests by route, payload reads, denials, audit appends, cache lookups and database
errors, with no secret name or id in any label; and, under gunicorn with two workers, the sum
of both workers (multiprocess mode): that one is in tests/console/test_browser.py, whose live
server it shares to save a server start."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from django.db import DatabaseError, connections, transaction
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from keys_app.services.projects import project_default_key

BASE = "/secret-manager/v1beta1/regions/fr-par"
TOKEN = "metrics-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def _api_user(project, role, name):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(name)
    if role:
        role_grant(principal=Principal.for_command(), user=user, role=role, obj=project)
    issued = api_key_create(principal=Principal.for_command(), user=user, project=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client, issued.secret_key


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_metrics_is_disabled_without_a_token_and_refuses_a_wrong_one(client, settings):
    settings.HKMS_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.HKMS_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.usefixtures("clear_throttles")
@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_metrics_count_reads_denials_audit_caches_and_name_no_secret(client, settings, project, make_secret):
    settings.HKMS_METRICS_TOKEN = TOKEN
    secret = make_secret(b"payload-never-in-metrics", name="very-secret-name", path="/hidden/folder")
    reader, reader_token = _api_user(project, "secret_reader", "metrics-reader")
    auditor, _ = _api_user(project, "auditor", "metrics-auditor")
    before = scrape(client)
    access = f"{BASE}/secrets/{secret.id}/versions/1/access"
    for _ in range(3):
        assert reader.get(access).status_code == 200
    assert auditor.get(access).status_code == 403  # may see metadata, not the payload: denied, audited
    after = scrape(client)

    routes = {dict(k[1]).get("route", "") for k in after if k[0] == "hkms_http_requests_total"}
    (route,) = [r for r in routes if r.endswith("/access") and "secret_id" in r] or [sorted(routes)]

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hkms_http_requests_total", route=route, method="GET", status="200") == 3
    assert delta("hkms_http_requests_total", route=route, method="GET", status="403") == 1
    assert delta("hkms_payload_reads_total", outcome="allowed") == 3
    assert delta("hkms_payload_reads_total", outcome="denied") == 1
    assert delta("hkms_denials_total", action="secret.version.access") == 1
    assert delta("hkms_audit_append_duration_seconds_count") >= 4
    assert delta("hkms_cache_lookups_total", cache="principal", result="hit") >= 2  # the reader's key, cached
    assert delta("hkms_cache_lookups_total", cache="key", result="hit") >= 1  # the DEK, after the first read
    assert value(after, "hkms_root_key_sealed") == 0 and value(after, "hkms_root_key_status_ok") == 1
    assert value(after, "hkms_root_key_provider", provider="file") == 1
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    for leak in (str(secret.id), "very-secret-name", "hidden", "payload-never", reader_token, TOKEN):
        assert leak not in text, leak


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_rotation_jobs_and_database_errors(client, settings, project, make_secret):
    from keys_app.services.rotation.kek import deks_rewrap, kek_rotate

    settings.HKMS_METRICS_TOKEN = TOKEN
    make_secret(b"x")
    make_secret(b"y")
    kek_rotate(key=project_default_key(project))
    deks_rewrap(key=project_default_key(project))
    before = scrape(client)
    assert value(before, "hkms_rotation_jobs", kind="rewrap_deks", state="done") == 1
    with pytest.raises(DatabaseError), transaction.atomic(using="dek"), connections["dek"].cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_for_metrics")  # in a savepoint: PostgreSQL goes on
    after = scrape(client)
    errors = [k for k in after if k[0] == "hkms_database_errors_total" and ("database", "dek") in k[1]]
    assert errors and sum(after[k] - before.get(k, 0) for k in errors) == 1
    assert [value(after, "hkms_database_up", database=a) for a in ("default", "kek", "dek")] == [1, 1, 1]


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_a_database_that_refuses_connections_is_down_and_counted(client, settings, monkeypatch):
    from django.db import OperationalError

    settings.HKMS_METRICS_TOKEN = TOKEN
    before = scrape(client)
    connection = connections["dek"]

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    monkeypatch.setattr(connection, "connection", None)
    during = scrape(client)
    monkeypatch.undo()
    after = scrape(client)
    assert value(during, "hkms_database_up", database="dek") == 0
    assert value(during, "hkms_database_up", database="default") == 1
    key = ("hkms_database_errors_total", (("database", "dek"), ("error", "OperationalError")))
    assert after.get(key, 0) - before.get(key, 0) == 1


def http_get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    """A request to a live server: (status, body, headers), whatever the status."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 (the live server on loopback)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_answers_given_before_url_resolution_get_bounded_labels(settings):
    """A payload read answered by a middleware (no resolver_match) counts under its URL pattern's
    label; static files and other early answers get fixed labels, never the path."""
    from django.urls import resolve

    from hkms_site.observability.middleware import _route, _unresolved_route

    path = f"{BASE}/secrets/6f0c7b7e-1d7e-4a43-9a57-6f3f0d4b7a10/versions/latest_enabled/access"
    assert _unresolved_route(path, 200) == _route(resolve(path))
    by_path = f"{BASE}/secrets-by-path/versions/3/access"
    assert _unresolved_route(by_path, 200) == _route(resolve(by_path))
    assert _unresolved_route(f"/{settings.STATIC_URL.strip('/')}/console/console.js", 200) == "static"
    assert _unresolved_route("/no/such/very-secret-name", 404) == "unmatched"
    assert _unresolved_route("/admin", 301) == "unresolved"
