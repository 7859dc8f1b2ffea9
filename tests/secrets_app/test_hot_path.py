"""The hot path (secrets_app/api/hot.py): it serves plain payload reads with the general path's
bytes, and hands every other case to the general path, whose answer is then unchanged.

Each comparison makes the same request twice, with the hot path on and off
(``HKMS_HOT_PATH``), and checks which of the two served it.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import DatabaseError, OperationalError
from django.utils import timezone
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_revoke
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_revoke
from hkms_core.audit.models import AuditEvent
from keys_app.services import material
from keys_app.services.keys.lifecycle import key_disable
from secrets_app.api import hot
from secrets_app.models import Secret, SecretVersion, VersionStatus
from tests.secrets_app.test_api import BASE, add_version, client_for, create_secret, send

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
OPERATOR = Principal.for_command()


@pytest.fixture
def served(monkeypatch):
    """A list that records, per payload read, whether the hot path answered it."""
    answers: list[bool] = []
    real = hot.serve

    def spy(request):
        response = real(request)
        answers.append(response is not None)
        return response

    monkeypatch.setattr(hot, "serve", spy)
    return answers


@pytest.fixture
def api(project):
    return client_for(project, "project_admin", "owner")


@pytest.fixture
def secret(api, project):
    body = create_secret(api, project, name="db", path="/apps/web")
    add_version(api, body["id"], b"first")
    add_version(api, body["id"], b"second")
    return body


def by_id(secret_id: str, revision: str = "latest_enabled", region: str = "fr-par") -> str:
    return f"/secret-manager/v1beta1/regions/{region}/secrets/{secret_id}/versions/{revision}/access"


def by_path(project, revision: str = "latest_enabled", **params) -> tuple[str, dict]:
    query = {"project_id": str(project.id), "secret_path": "/apps/web", "secret_name": "db", **params}
    return f"{BASE}/secrets-by-path/versions/{revision}/access", query


def general(settings, client, url, params=None, **extra):
    settings.HKMS_HOT_PATH = False
    try:
        return client.get(url, params, **extra)
    finally:
        settings.HKMS_HOT_PATH = True


#: Headers whose value is new on every request (hkms_site.observability: the request id).
PER_REQUEST = {"X-Request-Id"}


def same(hot_response, general_response) -> None:
    """Status, body and every header alike (a per-request header present on both, its value apart)."""
    assert hot_response.status_code == general_response.status_code
    assert hot_response.content == general_response.content
    for name in PER_REQUEST:
        assert hot_response.has_header(name) == general_response.has_header(name), name

    def stable(response):
        return sorted((k, v) for k, v in response.items() if k not in PER_REQUEST)

    assert stable(hot_response) == stable(general_response)


# --- served: the same bytes ---------------------------------------------------------------------
@pytest.mark.parametrize("revision", ["latest_enabled", "latest", "1", "2"])
def test_plain_reads_are_served_with_the_general_paths_bytes(settings, api, project, secret, served, revision):
    fast = api.get(by_id(secret["id"], revision))
    assert served == [True] and fast.status_code == 200
    same(fast, general(settings, api, by_id(secret["id"], revision)))
    url, params = by_path(project, revision)
    fast = api.get(url, params)
    assert served == [True, True] and fast.status_code == 200
    same(fast, general(settings, api, url, params))


def test_a_served_read_is_audited_like_a_general_one(settings, api, project, secret, served):
    fields = ("actor", "actor_user_id", "api_key", "via", "action", "object_type", "object_id", "project_id",
              "outcome", "source_ip", "detail")  # fmt: skip
    before = AuditEvent.objects.count()
    api.get(by_id(secret["id"]), HTTP_X_REQUEST_ID="req-1")
    general(settings, api, by_id(secret["id"]), HTTP_X_REQUEST_ID="req-2")
    events = list(AuditEvent.objects.order_by("seq")[before:].values(*fields, "request_id"))
    assert served == [True] and len(events) == 2
    assert [e["request_id"] for e in events] == ["req-1", "req-2"]
    hot_event, general_event = ({k: e[k] for k in fields} for e in events)
    assert hot_event == general_event
    assert hot_event["action"] == "secret.version.access" and hot_event["detail"] == {"revision": 2}


def test_no_event_no_payload(api, secret, served, caplog):
    with mock.patch.object(hot, "audit_record_committed", side_effect=DatabaseError("disk full")):
        response = api.get(by_id(secret["id"]))
    assert served == [True] and response.status_code == 500
    assert response.json() == {"type": "internal_error", "message": "internal error"}
    assert b"data" not in response.content and "c2Vjb25k" not in caplog.text  # base64 of b"second"


@pytest.mark.parametrize("error", [DatabaseError("disk full"), OperationalError("server closed the connection")])
def test_a_failed_audit_append_is_answered_as_the_general_path_answers_it(settings, api, secret, served, error):
    with (
        mock.patch.object(hot, "audit_record_committed", side_effect=error),
        mock.patch("secrets_app.services.access.audit_record_committed", side_effect=error),
    ):
        fast = api.get(by_id(secret["id"]))
        assert served[-1] is True and fast.status_code in (500, 503) and b"data" not in fast.content
        same(fast, general(settings, api, by_id(secret["id"])))


# --- handed over: the general path's answer, unchanged -------------------------------------------
def _disable(api, secret_id, revision):
    assert send(api, "post", f"/secrets/{secret_id}/versions/{revision}/disable").status_code == 200


CASES = {
    "disabled version": lambda api, s, p: _disable(api, s["id"], 2),
    "version scheduled for deletion": lambda api, s, p: send(api, "delete", f"/secrets/{s['id']}/versions/2"),
    "secret scheduled for deletion": lambda api, s, p: send(api, "delete", f"/secrets/{s['id']}"),
    "disabled key": lambda api, s, p: key_disable(principal=OPERATOR, key_id=p.default_key_id),
    "destroyed DEK": lambda api, s, p: material.deks_destroy(
        list(SecretVersion.objects.filter(secret_id=s["id"]).values_list("dek_id", flat=True))
    ),
    "expired version": lambda api, s, p: SecretVersion.objects.filter(secret_id=s["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    ),
    "moved to another region": lambda api, s, p: Secret.objects.filter(id=s["id"]).update(region="nl-ams"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("revision", ["2", "latest", "latest_enabled"])
def test_every_other_state_is_answered_by_the_general_path(settings, api, project, secret, served, case, revision):
    api.get(by_id(secret["id"], revision))  # the DEK is cached now
    served.clear()
    CASES[case](api, secret, project)
    # latest_enabled skips a disabled or scheduled revision 2: revision 1 is served.
    still_served = revision == "latest_enabled" and case in ("disabled version", "version scheduled for deletion")
    for url, params in ((by_id(secret["id"], revision), None), by_path(project, revision)):
        answer = api.get(url, params)
        assert served[-1] is still_served, (case, url)
        assert (answer.status_code == 200) is still_served, (case, url, answer.content)
        same(answer, general(settings, api, url, params))


@pytest.mark.parametrize(
    "variant",
    [
        {"url": by_id("{id}", "latest_enabled", region="xx-yyy")},  # unknown region
        {"url": by_id("{id}", "0")},  # malformed revision
        {"url": by_id("not-a-uuid")},
        {"url": by_id("00000000-0000-0000-0000-000000000000")},  # unknown secret
        {"url": by_id("{id}", "7")},  # no such version
        {"url": by_id("{id}"), "extra": {"HTTP_ACCEPT": "text/html"}},  # DRF's negotiation: 406
        {"url": by_id("{id}") + "?format=xml"},  # DRF: no such renderer, 404
        {"url": by_id("{id}"), "extra": {"HTTP_COOKIE": "sessionid=x"}, "status": 200},  # the session's business
    ],
    ids=["region", "revision", "id", "unknown", "missing-version", "accept", "format", "cookie"],
)
def test_malformed_unknown_or_unauthenticated_reads_are_handed_over(settings, api, secret, served, variant):
    url = variant["url"].replace("{id}", secret["id"])
    extra = variant.get("extra", {})
    handed = api.get(url, **extra)
    assert served == [False] and handed.status_code == variant.get("status", handed.status_code)
    assert handed.status_code != 200 or "status" in variant
    same(handed, general(settings, api, url, **extra))


def test_a_bad_token_is_handed_over(settings, secret, served):
    stranger = APIClient()
    stranger.credentials(HTTP_X_AUTH_TOKEN="0b6f0e2e-54b5-4f3b-9d7c-2b8a4f0c1d2e")
    refused = stranger.get(by_id(secret["id"]))
    assert served == [False] and refused.status_code == 401
    same(refused, general(settings, stranger, by_id(secret["id"])))


@pytest.mark.parametrize("params", [{"secret_name": "nope"}, {"secret_path": "/apps"}, {"project_id": "x"}])
def test_by_path_misses_are_handed_over(settings, api, project, secret, served, params):
    url, query = by_path(project, **params)
    handed = api.get(url, query)
    assert served == [False] and handed.status_code in (400, 404)
    same(handed, general(settings, api, url, query))


def test_a_caller_without_the_read_role_is_refused_by_the_general_path(settings, project, secret, served):
    auditor = client_for(project, "auditor", "auditor")
    stranger = client_for(project, None, "stranger")
    for client in (auditor, stranger):
        refused = client.get(by_id(secret["id"]))
        assert served[-1] is False and refused.status_code in (403, 404)
        same(refused, general(settings, client, by_id(secret["id"])))
    assert AuditEvent.objects.filter(action="secret.version.access", outcome="denied").count() == 4


def test_revocations_apply_to_the_next_read(api, project, secret, served):
    assert api.get(by_id(secret["id"])).status_code == 200
    role_revoke(principal=OPERATOR, user=api.user, role="project_admin", obj=project)
    assert api.get(by_id(secret["id"])).status_code == 404
    reader = client_for(project, "secret_reader", "reader")
    assert reader.get(by_id(secret["id"])).status_code == 200
    api_key_revoke(principal=OPERATOR, access_key=reader.user.api_keys.get().access_key)
    assert reader.get(by_id(secret["id"])).status_code == 401
    assert served == [True, False, True, False]


def test_expires_once_accessed_is_read_exactly_once_by_the_general_path(api, project, served):
    body = create_secret(
        api, project, name="once", ephemeral_policy={"expires_once_accessed": True, "action": "disable"}
    )
    add_version(api, body["id"], b"one time")
    first, second = api.get(by_id(body["id"], "1")), api.get(by_id(body["id"], "1"))
    assert (first.status_code, second.status_code) == (200, 410) and served == [False, False]
    assert SecretVersion.objects.get(secret_id=body["id"]).status == VersionStatus.DISABLED


def test_the_user_throttle_still_counts_and_answers_429(settings, project, secret, served):
    reader = client_for(project, "secret_reader", "reader")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": "2/minute"}}
    answers = [reader.get(by_id(secret["id"])) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429] and served == [True, True, False]
    assert answers[2].json()["type"] == "quotas_exceeded" and int(answers[2]["Retry-After"]) >= 1


def test_hot_path_off_serves_everything_the_general_way(settings, api, secret, served):
    settings.HKMS_HOT_PATH = False
    assert api.get(by_id(secret["id"])).status_code == 200 and served == []
