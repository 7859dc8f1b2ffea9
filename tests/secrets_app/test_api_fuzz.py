"""Fuzzing the Secret Manager API with hypothesis: malformed JSON bodies, query parameters and path
segments on every endpoint never get a 5xx, and every error is JSON with a ``message`` or ``type``."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
R = "/secret-manager/v1beta1/regions/{region}"
S = R + "/secrets/{secret_id}"
V = S + "/versions/{revision}"
#: Every endpoint of the Secret Manager API: (method, path template).
ENDPOINTS = [
    ("get", R + "/secrets"),
    ("post", R + "/secrets"),
    ("get", R + "/secrets/browse"),
    ("get", R + "/secrets-by-path/versions/{revision}/access"),
    ("get", R + "/tags"),
    ("get", R + "/secret-types"),
    ("get", S),
    ("patch", S),
    ("delete", S),
    ("post", S + "/protect"),
    ("post", S + "/unprotect"),
    ("post", S + "/restore"),
    ("post", S + "/add-owner"),
    ("get", S + "/versions"),
    ("post", S + "/versions"),
    ("get", V),
    ("patch", V),
    ("delete", V),
    ("get", V + "/access"),
    ("post", V + "/enable"),
    ("post", V + "/disable"),
    ("post", V + "/restore"),
]
FIELDS = [
    "name",
    "project_id",
    "protected",
    "tags",
    "description",
    "type",
    "path",
    "ephemeral_policy",
    "key_id",
    "data",
    "disable_previous",
    "data_crc32",
    "ephemeral_properties",
    "product",
    "time_to_live",
    "expires_at",
    "expires_once_accessed",
    "action",
]
PARAMS = [
    "page",
    "page_size",
    "order_by",
    "project_id",
    "organization_id",
    "tags",
    "name",
    "path",
    "ephemeral",
    "type",
    "scheduled_for_deletion",
    "prefix",
    "status",
    "secret_path",
    "secret_name",
]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | text
    | st.sampled_from(
        [
            "",
            "/",
            "3600s",
            "-1s",
            "1e9s",
            "latest",
            "opaque",
            "delete",
            "disable",
            "AAAA",
            "=",
            "2024-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00+14:00",
            "\x00",
            "é" * 300,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | text, inner, max_size=5),
    max_leaves=12,
)


def field_bodies(project_id: str) -> st.SearchStrategy:
    value = json_values | st.just(project_id) | st.builds(lambda: str(uuid.uuid4()))
    return st.dictionaries(st.sampled_from(FIELDS), value, max_size=8)


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code == 204:
        return
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert isinstance(body, dict) and ("message" in body or "type" in body), body


@pytest.fixture
def world(project):
    cache.clear()
    operator = Principal.for_command()
    user = get_user_model().objects.create_user("fuzzer")
    role_grant(principal=operator, user=user, role="project_admin", obj=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=api_key_create(principal=operator, user=user, project=project).secret_key)
    secret = secret_services.secret_create(principal=operator, project_id=project.id, name="target", path="/apps")
    version_services.secret_version_create(principal=operator, secret_id=secret.id, data=b"payload")
    yield client, str(project.id), str(secret.id)
    cache.clear()


def url(template: str, region: str, secret_id: str, revision: str) -> str:
    return template.format(
        region=quote(region, safe=""), secret_id=quote(secret_id, safe=""), revision=quote(revision, safe="")
    )


@FUZZ
@given(data=st.data())
def test_malformed_json_bodies_never_5xx(world, data):
    client, project_id, secret_id = world
    method, template = data.draw(st.sampled_from([e for e in ENDPOINTS if e[0] in ("post", "patch")]))
    revision = data.draw(st.sampled_from(["1", "latest", "latest_enabled", "2"]))
    body = data.draw(
        field_bodies(project_id).map(json.dumps)
        | json_values.map(json.dumps)
        | st.binary(max_size=200)
        | st.sampled_from(["", "{", "[]", "null", '{"data": NaN}', '{"name": 1e999}', '"x"' * 10, "{}" * 3])
    )
    content_type = data.draw(
        st.sampled_from(["application/json"] * 4 + ["text/plain", "application/x-www-form-urlencoded"])
    )
    response = getattr(client, method)(
        url(template, "fr-par", secret_id, revision), data=body, content_type=content_type
    )
    check(response)


@FUZZ
@given(data=st.data())
def test_malformed_query_parameters_never_5xx(world, data):
    client, project_id, secret_id = world
    _method, template = data.draw(st.sampled_from([e for e in ENDPOINTS if e[0] == "get"]))
    revision = data.draw(st.sampled_from(["1", "latest", "latest_enabled"]) | text)
    value = text | st.sampled_from(
        [
            "0",
            "-1",
            "101",
            "100",
            "1",
            "true",
            "False",
            project_id,
            "/",
            "/apps",
            "target",
            "enabled",
            str(2**64),
            "name_desc",
            "unknown_type",
        ]
    )
    params = data.draw(st.dictionaries(st.sampled_from(PARAMS) | text, value | st.lists(value, max_size=3), max_size=6))
    response = client.get(url(template, "fr-par", secret_id, revision or "1"), params)
    check(response)


@FUZZ
@given(data=st.data())
def test_malformed_path_segments_never_5xx(world, data):
    client, _project_id, secret_id = world
    method, template = data.draw(st.sampled_from(ENDPOINTS))
    segment = text.filter(lambda s: s not in ("", ".", ".."))
    region = data.draw(st.sampled_from(["fr-par", "nl-ams"]) | segment)
    sid = data.draw(st.sampled_from([secret_id, str(uuid.uuid4()), secret_id.upper(), "{" + secret_id + "}"]) | segment)
    revision = data.draw(st.sampled_from(["1", "latest", "0", "-1", "99999999999", "1.0", "²"]) | segment)
    target = url(template, region, sid, revision)
    if method in ("get", "delete"):
        response = getattr(client, method)(target)
    else:
        response = getattr(client, method)(target, data="{}", content_type="application/json")
    check(response)
