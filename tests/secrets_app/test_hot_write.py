"""The write hot path (secrets_app/api/hot_write.py): a plain version creation is served with
the general path's bytes, rows and audit events; every other request is handed to the general
path before any side effect, and once the service ran the answer is the hot path's own.

Each comparison makes the same request with the hot path on and off (``HKMS_HOT_PATH``), on two
secrets alike, and checks which path served it and that no request created two versions.
"""

from __future__ import annotations

import json
import re
import zlib

import pytest
from rest_framework.test import APIClient

from hkms_core.api.common import b64encode
from hkms_core.audit.models import AuditEvent
from secrets_app.api import hot_write
from secrets_app.models import SecretVersion
from tests.secrets_app.test_api import BASE, client_for, create_secret, send

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
PER_REQUEST = {"X-Request-Id", "Content-Length"}
_TIMESTAMP = re.compile(rb'"\d{4}-\d\d-\d\dT[0-9:.]+Z"')
_EVENT_FIELDS = ("actor", "actor_user_id", "api_key", "via", "action", "object_type", "outcome", "source_ip", "detail")
_ROW_FIELDS = ("revision", "status", "description", "data_crc32", "expires_once_accessed", "ephemeral_action")


@pytest.fixture
def served(monkeypatch):
    """Per version creation: whether the hot path answered it."""
    answers: list[bool] = []
    real = hot_write.serve

    def spy(request):
        response = real(request)
        answers.append(response is not None)
        return response

    monkeypatch.setattr(hot_write, "serve", spy)
    return answers


@pytest.fixture
def api(project):
    return client_for(project, "project_admin", "owner")


def _twins(api, project, **body) -> tuple[str, str]:
    return tuple(create_secret(api, project, name=f"twin-{n}", **body)["id"] for n in "ab")  # type: ignore[return-value]


def _post(api, secret_id, body, *, hot: bool, settings, content_type="application/json", **extra):
    settings.HKMS_HOT_PATH = hot
    try:
        data = body if isinstance(body, str | bytes) else json.dumps(body, ensure_ascii=False)
        return api.post(f"{BASE}/secrets/{secret_id}/versions", data=data, content_type=content_type, **extra)
    finally:
        settings.HKMS_HOT_PATH = True


def _normal(response, secret_id: str) -> bytes:
    return _TIMESTAMP.sub(b'"T"', response.content.replace(secret_id.encode(), b"ID"))


def same(fast, fast_id, slow, slow_id) -> None:
    """Status, body (modulo the secret's id and timestamps) and every stable header alike."""
    assert fast.status_code == slow.status_code
    assert _normal(fast, fast_id) == _normal(slow, slow_id)
    for response in (fast, slow):
        assert response["Content-Length"] == str(len(response.content))
        assert response.has_header("X-Request-Id")

    def stable(response):
        return sorted((k, v) for k, v in response.items() if k not in PER_REQUEST)

    assert stable(fast) == stable(slow)


def rows(secret_id):
    return list(SecretVersion.objects.filter(secret_id=secret_id).order_by("revision").values(*_ROW_FIELDS))


def events(secret_id):
    found = AuditEvent.objects.filter(object_id=str(secret_id), action="secret.version.create").order_by("seq")
    return list(found.values(*_EVENT_FIELDS))


def compare(settings, api, project, served, body, *, served_hot: bool, secret_body=None, prepare=None, **extra):
    """The same request on two twin secrets, hot path on then off; returns the hot answer."""
    fast_id, slow_id = _twins(api, project, **(secret_body or {}))
    for sid in (fast_id, slow_id):
        if prepare:
            prepare(sid)
    before = (len(rows(fast_id)), len(rows(slow_id)))
    fast = _post(api, fast_id, body, hot=True, settings=settings, **extra)
    slow = _post(api, slow_id, body, hot=False, settings=settings, **extra)
    assert served == [served_hot]
    same(fast, fast_id, slow, slow_id)
    assert rows(fast_id) == rows(slow_id) and events(fast_id) == events(slow_id)
    created = len(rows(fast_id)) - before[0]
    assert created == (1 if fast.status_code == 200 else 0)
    return fast


# --- served: the general path's bytes, rows and events -----------------------------------------
PLAIN = [
    {"data": b64encode(b"s3cret")},
    {"data": b64encode(b"x" * 65536), "description": None, "disable_previous": None, "data_crc32": None},
    {"data": b64encode(b"v"), "description": '  r\u00e9sum\u00e9 \u2028 \u2029 "q" <b>  ', "disable_previous": True},
    {"data": b64encode(b"v"), "description": "", "disable_previous": False, "data_crc32": zlib.crc32(b"v")},
    {"data": b64encode(b"v"), "description": "d" * 4096},
]


@pytest.mark.parametrize("body", PLAIN, ids=["data", "nulls", "description", "crc32", "long-description"])
def test_plain_writes_are_served_with_the_general_paths_bytes(settings, api, project, served, body):
    fast = compare(settings, api, project, served, body, served_hot=True)
    assert fast.status_code == 200


def test_a_second_version_with_disable_previous(settings, api, project, served):
    def prepare(sid):
        _post(api, sid, {"data": b64encode(b"first")}, hot=False, settings=settings)

    fast = compare(
        settings, api, project, served, {"data": b64encode(b"v2"), "disable_previous": True}, served_hot=True,
        prepare=prepare,
    )  # fmt: skip
    assert fast.json()["revision"] == 2 and fast.json()["latest"] is True


def test_an_ephemeral_secrets_version(settings, api, project, served):
    policy = {"ephemeral_policy": {"time_to_live": "3600s", "expires_once_accessed": True, "action": "disable"}}
    fast = compare(settings, api, project, served, {"data": b64encode(b"e")}, served_hot=True, secret_body=policy)
    assert fast.json()["ephemeral_properties"]["expires_once_accessed"] is True


def test_the_served_version_reads_back(api, project, served):
    sid = create_secret(api, project, name="rb")["id"]
    assert send(api, "post", f"/secrets/{sid}/versions", {"data": b64encode(b"payload")}).status_code == 200
    read = api.get(f"{BASE}/secrets/{sid}/versions/latest/access")
    assert served == [True] and read.json()["data"] == b64encode(b"payload")


# --- the service's errors: answered by the hot path, as the general path answers them ---------
def test_a_crc32_mismatch_is_the_services_400(settings, api, project, served):
    fast = compare(settings, api, project, served, {"data": b64encode(b"v"), "data_crc32": 1}, served_hot=True)
    assert fast.status_code == 400


def test_a_secret_scheduled_for_deletion_is_the_general_paths_412(settings, api, project, served):
    def prepare(sid):
        assert send(api, "delete", f"/secrets/{sid}").status_code == 204

    fast = compare(settings, api, project, served, {"data": b64encode(b"v")}, served_hot=True, prepare=prepare)
    assert fast.status_code == 412


def test_a_key_value_secret_refuses_a_non_object(settings, api, project, served):
    fast = compare(
        settings, api, project, served, {"data": b64encode(b"[1]")}, served_hot=True, secret_body={"type": "key_value"}
    )
    assert fast.status_code == 400


@pytest.mark.parametrize(("role", "status"), [("secret_reader", 403), (None, 404)])
def test_no_permission_is_the_audited_refusal(settings, api, project, served, role, status):
    refused = client_for(project, role, "refused")
    fast_id, slow_id = _twins(api, project)
    fast = _post(refused, fast_id, {"data": b64encode(b"v")}, hot=True, settings=settings)
    slow = _post(refused, slow_id, {"data": b64encode(b"v")}, hot=False, settings=settings)
    assert served == [True] and fast.status_code == status
    same(fast, fast_id, slow, slow_id)
    assert rows(fast_id) == rows(slow_id) == []
    assert events(fast_id) == events(slow_id) and [e["outcome"] for e in events(fast_id)] == ["denied"]


def test_an_unknown_secret_is_the_audited_404(settings, api, served):
    unknown = "00000000-0000-0000-0000-000000000000"
    fast = _post(api, unknown, {"data": b64encode(b"v")}, hot=True, settings=settings)
    slow = _post(api, unknown, {"data": b64encode(b"v")}, hot=False, settings=settings)
    assert served == [True] and fast.status_code == 404
    same(fast, unknown, slow, unknown)


# --- handed over before any side effect --------------------------------------------------------
V = b64encode(b"v")
HANDED = {
    "cookie": ({"data": V}, {"HTTP_COOKIE": "sessionid=x"}),
    "unknown-key": ({"data": V, "extra": 1}, {}),
    "bad-base64": ({"data": "not base64!"}, {}),
    "empty-data": ({"data": ""}, {}),
    "no-data": ({"description": "x"}, {}),
    "too-large": ({"data": b64encode(b"x" * 65537)}, {}),
    "description-number": ({"data": V, "description": 5}, {}),
    "description-nul": ({"data": V, "description": "a\x00b"}, {}),
    "description-long": ({"data": V, "description": "d" * 4097}, {}),
    "disable-string": ({"data": V, "disable_previous": "true"}, {}),
    "crc-string": ({"data": V, "data_crc32": str(zlib.crc32(b"v"))}, {}),
    "crc-bool": ({"data": V, "data_crc32": True}, {}),
    "crc-range": ({"data": V, "data_crc32": 2**32}, {}),
    "array": ([{"data": V}], {}),
    "malformed": ('{"data": ', {}),
    "too-deep": ('{"data": "dg==", "description": ' + "[" * 40 + "]" * 40 + "}", {}),
    "nan": ('{"data": "dg==", "data_crc32": NaN}', {}),
    "accept": ({"data": V}, {"HTTP_ACCEPT": "text/html"}),
    "content-type": ({"data": V}, {"content_type": "text/plain"}),
    "form": ("data=dg%3D%3D", {"content_type": "application/x-www-form-urlencoded"}),
    "not-utf8": (b'{"data": "dg==", "description": "\xff"}', {}),
}


@pytest.mark.parametrize("case", HANDED)
def test_anything_else_is_handed_over_and_answered_as_before(settings, api, project, served, case):
    body, extra = HANDED[case]
    compare(settings, api, project, served, body, served_hot=False, **extra)


def test_a_query_string_is_handed_over(settings, api, project, served):
    sid = create_secret(api, project, name="q")["id"]
    response = api.post(f"{BASE}/secrets/{sid}/versions?format=json", data=json.dumps({"data": V}),
                        content_type="application/json")  # fmt: skip
    assert served == [False] and response.status_code == 200 and len(rows(sid)) == 1


def test_an_unknown_region_or_malformed_id_is_handed_over(settings, api, project, served):
    for url in (f"/secret-manager/v1beta1/regions/xx-yyy/secrets/{'0' * 32}/versions", f"{BASE}/secrets/nope/versions"):
        answers = []
        for hot in (True, False):
            settings.HKMS_HOT_PATH = hot
            answers.append(api.post(url, data=json.dumps({"data": V}), content_type="application/json"))
        settings.HKMS_HOT_PATH = True
        assert answers[0].status_code == answers[1].status_code == 400 or answers[0].status_code == 404
        assert answers[0].content == answers[1].content
    assert served == [False, False]


def test_a_bad_token_is_handed_over(settings, api, project, served):
    stranger = APIClient()
    stranger.credentials(HTTP_X_AUTH_TOKEN="0b6f0e2e-54b5-4f3b-9d7c-2b8a4f0c1d2e")
    fast_id, slow_id = _twins(api, project)
    fast = _post(stranger, fast_id, {"data": V}, hot=True, settings=settings)
    slow = _post(stranger, slow_id, {"data": V}, hot=False, settings=settings)
    assert served == [False] and fast.status_code == 401
    same(fast, fast_id, slow, slow_id)
    assert rows(fast_id) == rows(slow_id) == []


def test_the_user_throttle_counts_and_the_general_path_answers_429(settings, api, project, served):
    writer = client_for(project, "project_admin", "writer")
    sid = create_secret(api, project, name="t")["id"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": "2/minute"}}
    answers = [send(writer, "post", f"/secrets/{sid}/versions", {"data": V}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429] and served == [True, True, False]
    assert answers[2].json()["type"] == "quotas_exceeded" and len(rows(sid)) == 2


def test_hot_path_off_serves_every_write_the_general_way(settings, api, project, served):
    sid = create_secret(api, project, name="off")["id"]
    settings.HKMS_HOT_PATH = False
    assert send(api, "post", f"/secrets/{sid}/versions", {"data": V}).status_code == 200 and served == []
