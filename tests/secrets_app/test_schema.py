"""The OpenAPI schema (/api/schema/) and the docs page (/api/docs/) for Secret Manager v1beta1.

The schema must be valid OpenAPI 3, name every path the official SDK calls, and describe
the real responses: each response component carries every field the SDK's ``unmarshal_*``
function reads, and real answers of the API validate against their component.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
from typing import Any

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.cache import cache
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient
from scaleway.secret.v1beta1 import api as sdk_api
from scaleway.secret.v1beta1 import marshalling as sdk_marshalling

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant

BASE = "/secret-manager/v1beta1/regions/fr-par"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def sdk_calls() -> dict[str, tuple[str, str, str | None]]:
    """``{sdk method: (HTTP method, schema path, unmarshal function or None)}`` read from the SDK's source."""
    source = inspect.getsource(sdk_api)
    calls: dict[str, tuple[str, str, str | None]] = {}
    for match in re.finditer(r"\n    def (\w+)\(.*?(?=\n    def |\Z)", source, re.S):
        body = match.group(0)
        request = re.search(r'self\._request\(\s*"(\w+)",\s*f"([^"]+)"', body)
        if request is None:  # the *_all helpers page through another method
            continue
        path = re.sub(r"\{param_(\w+)\}", r"{\1}", request.group(2))
        unmarshal = re.search(r"return (unmarshal_\w+)\(res\.json\(\)\)", body)
        calls[match.group(1)] = (request.group(1).lower(), path, unmarshal.group(1) if unmarshal else None)
    return calls


def fields_read_by(unmarshal: str) -> set[str]:
    return set(re.findall(r'data\.get\("(\w+)"', inspect.getsource(getattr(sdk_marshalling, unmarshal))))


def resolve(schema: dict[str, Any], node: Any) -> Any:
    """``node`` with every ``$ref`` inlined and OpenAPI's ``nullable`` turned into JSON Schema."""
    if isinstance(node, list):
        return [resolve(schema, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return resolve(schema, schema["components"]["schemas"][name])
    out = {k: resolve(schema, v) for k, v in node.items() if k not in ("nullable", "readOnly", "writeOnly")}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def response_schema(schema: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    responses = schema["paths"][path][method]["responses"]
    ok = responses.get("200")
    if ok is None:
        return None
    return resolve(schema, ok["content"]["application/json"]["schema"])


def properties(node: dict[str, Any]) -> set[str]:
    if "anyOf" in node:
        return set().union(*(properties(n) for n in node["anyOf"]))
    return set(node.get("properties", {}))


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)
    assert schema["components"]["securitySchemes"]["ScalewayToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
    }


def test_every_sdk_call_is_in_the_schema(schema):
    calls = sdk_calls()
    assert len(calls) == 22  # the 26 methods less the four *_all helpers
    missing = [name for name, (method, path, _) in calls.items() if method not in schema["paths"].get(path, {})]
    assert missing == []


def test_operation_ids_are_the_sdk_method_names(schema):
    ids = {name: schema["paths"][path][method]["operationId"] for name, (method, path, _) in sdk_calls().items()}
    assert ids == {name: name for name in ids}


def test_every_query_parameter_the_sdk_sends_is_described(schema):
    source = inspect.getsource(sdk_api)
    for match in re.finditer(r"\n    def (\w+)\(.*?(?=\n    def |\Z)", source, re.S):
        params = re.search(r"params=\{(.*?)\n            \}", match.group(0), re.S)
        if params is None or match.group(1) not in sdk_calls():
            continue
        method, path, _ = sdk_calls()[match.group(1)]
        sent = set(re.findall(r'"(\w+)":', params.group(1)))
        described = {p["name"] for p in schema["paths"][path][method].get("parameters", []) if p["in"] == "query"}
        assert sent <= described, f"{match.group(1)}: {sorted(sent - described)}"


def test_the_schema_generates_without_warnings():
    from io import StringIO

    from django.core.management import call_command

    err = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null", stderr=err)
    assert "Warning" not in err.getvalue()


def test_responses_describe_every_field_the_sdk_reads(schema):
    for name, (method, path, unmarshal) in sdk_calls().items():
        described = response_schema(schema, method, path)
        if unmarshal is None:  # delete_secret, delete_secret_version, add_secret_owner: no body
            assert described is None, name
            continue
        assert described is not None, name
        wanted = fields_read_by(unmarshal)
        assert wanted <= properties(described), f"{name}: {sorted(wanted - properties(described))}"


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_real_answers_validate_against_their_schema(schema, project):
    cache.clear()
    operator = Principal.for_command()
    user = get_user_model().objects.create_user("schema-owner")
    role_grant(principal=operator, user=user, role="project_admin", obj=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=api_key_create(principal=operator, user=user, project=project).secret_key)

    def check(method: str, template: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        call = getattr(client, method)
        response = call(url, data=json.dumps(body), content_type="application/json") if body else call(url)
        assert response.status_code == 200, response.content
        document = response.json()
        jsonschema.validate(document, response_schema(schema, method, template))
        return document

    S = "/secret-manager/v1beta1/regions/{region}/secrets"
    created = check(
        "post",
        S,
        f"{BASE}/secrets",
        {
            "project_id": str(project.id),
            "name": "schema",
            "tags": ["a"],
            "protected": False,
            "ephemeral_policy": {"time_to_live": "3600s", "action": "disable"},
        },
    )
    secret_id = created["id"]
    check("get", S + "/{secret_id}", f"{BASE}/secrets/{secret_id}")
    check("get", S, f"{BASE}/secrets")
    version = check(
        "post",
        S + "/{secret_id}/versions",
        f"{BASE}/secrets/{secret_id}/versions",
        {"data": base64.b64encode(b"x").decode()},
    )
    assert version["ephemeral_properties"]["expires_at"]
    check("get", S + "/{secret_id}/versions", f"{BASE}/secrets/{secret_id}/versions")
    check("get", S + "/{secret_id}/versions/{revision}", f"{BASE}/secrets/{secret_id}/versions/1")
    check("get", S + "/{secret_id}/versions/{revision}/access", f"{BASE}/secrets/{secret_id}/versions/latest/access")
    check("post", S + "/{secret_id}/versions/{revision}/disable", f"{BASE}/secrets/{secret_id}/versions/1/disable")
    check("post", S + "/{secret_id}/protect", f"{BASE}/secrets/{secret_id}/protect")
    check("get", S + "/browse", f"{BASE}/secrets/browse?prefix=/")
    check("get", "/secret-manager/v1beta1/regions/{region}/tags", f"{BASE}/tags")
    check("get", "/secret-manager/v1beta1/regions/{region}/secret-types", f"{BASE}/secret-types")


def test_the_docs_page_uses_local_assets_only():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "/api/schema/" in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert finders.find("drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "http" not in policy
    assert "<script>" not in page  # no inline script: the page works under the CSP it sends
