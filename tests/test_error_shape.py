"""Every API error in Scaleway's shape: request-format errors, malformed and deeply nested bodies.

Issue 12, items 8 and 9: a deeply nested JSON body answered 500 on every endpoint
(``RecursionError`` in the parser), and request-format errors came back as
``{"message": "Validation Error", "fields": {…}}`` without ``details`` (the
TypeScript SDK then raised a bare error), with nested errors as a Python repr.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.test import APIClient
from scaleway_core.api import API, ScalewayException, ValidationError

from hkms_core import safejson
from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.api.exceptions import error_response, flatten_validation

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
SM = "/secret-manager/v1beta1/regions/fr-par"
KM = "/key-manager/v1alpha1/regions/fr-par"


@pytest.fixture
def api(project):
    user = get_user_model().objects.create_user("owner")
    role_grant(principal=Principal.for_command(), user=user, role="project_admin", obj=project)
    client = APIClient()
    client.credentials(
        HTTP_X_AUTH_TOKEN=api_key_create(principal=Principal.for_command(), user=user, project=project).secret_key
    )
    return client


def send(api, method: str, path: str, body) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(api, method)(path, data=data, content_type="application/json")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_scaleway_shape(response) -> dict:
    """A JSON object with a string ``type`` and ``message``; ``invalid_arguments`` with usable ``details``."""
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("type"), str) and isinstance(body.get("message"), str), body
    assert "ErrorDetail" not in response.content.decode() and "Traceback" not in response.content.decode()
    if body["type"] == "invalid_arguments":
        assert body["details"] and all(
            isinstance(d["argument_name"], str)
            and d["reason"] in ("required", "format", "constraint", "unknown")
            and isinstance(d["help_message"], str)
            for d in body["details"]
        ), body
        assert body["fields"] == {
            name: [d["help_message"] for d in body["details"] if d["argument_name"] == name]
            for name in {d["argument_name"] for d in body["details"]}
        }
    return body


def python_sdk_error(response) -> Exception:
    """What the official Python SDK raises for this answer (its own ``_throw_on_error``)."""
    res = requests.Response()
    res.status_code, res._content = response.status_code, response.content
    res.headers["Content-Type"] = response["Content-Type"]
    with pytest.raises(ScalewayException) as info:
        API._throw_on_error(None, res)  # type: ignore[arg-type]
    return info.value


@pytest.fixture
def secret_id(api, project):
    response = send(api, "post", f"{SM}/secrets", {"name": "db", "project_id": str(project.id)})
    assert response.status_code == 200, response.content
    return response.json()["id"]


@pytest.fixture
def key_id(api, project):
    response = send(api, "post", f"{KM}/keys", {"project_id": str(project.id), "name": "k"})
    assert response.status_code == 200, response.content
    return response.json()["id"]


#: The seven cases of the issue: (method, path template, body, argument_name).
REQUEST_FORMAT_CASES = [
    ("post", "{sm}/secrets/{secret}/versions", {"data": b64(b"x"), "data_crc32": -1}, "data_crc32"),
    ("post", "{sm}/secrets/{secret}/versions", {"data": b64(b"x"), "data_crc32": 2**32}, "data_crc32"),
    ("post", "{sm}/secrets", {"name": "n" * 256, "project_id": "{project}"}, "name"),
    ("post", "{sm}/secrets", {"name": "d", "description": "d" * 4097, "project_id": "{project}"}, "description"),
    ("post", "{sm}/secrets/{secret}/add-owner", {}, "product"),
    ("post", "{km}/keys/{key}/encrypt", {"plaintext": "%%% not base64"}, "plaintext"),
    ("patch", "{km}/keys/{key}", {"rotation_policy": {"rotation_period": "1h"}}, "rotation_policy.rotation_period"),
]


@pytest.mark.parametrize(("method", "template", "body", "argument"), REQUEST_FORMAT_CASES)
def test_request_format_errors_have_details_and_dotted_names(
    api, project, secret_id, key_id, method, template, body, argument
):
    path = template.format(sm=SM, km=KM, secret=secret_id, key=key_id)
    body = json.loads(json.dumps(body).replace("{project}", str(project.id)))
    response = send(api, method, path, body)
    assert response.status_code == 400, response.content
    found = assert_scaleway_shape(response)
    assert found["type"] == "invalid_arguments" and found["message"] == "Validation Error"
    assert [d["argument_name"] for d in found["details"]] == [argument]
    # The Python SDK raises its validation error, with the dotted name.
    error = python_sdk_error(response)
    assert isinstance(error, ValidationError) and argument in error.errors


def test_a_service_check_is_in_the_same_shape(api, secret_id):
    response = send(api, "post", f"{SM}/secrets/{secret_id}/versions", {"data": b64(b"x"), "data_crc32": 5})
    found = assert_scaleway_shape(response)
    assert response.status_code == 400 and found["details"][0]["argument_name"] == "data_crc32"
    assert "data_crc32" in found["message"]  # a sentence, not "Validation Error"


def test_nested_errors_are_flattened_never_a_repr():
    class Policy(serializers.Serializer):
        rotation_period = serializers.CharField()
        next_rotation_at = serializers.DateTimeField(required=False)

    class Body(serializers.Serializer):
        rotation_policy = Policy()
        tags = serializers.ListField(child=serializers.CharField(max_length=3))
        owners = Policy(many=True)

    checked = Body(
        data={
            "rotation_policy": {"rotation_period": 5.5, "next_rotation_at": "soon"},
            "tags": ["ok", "far too long"],
            "owners": [{"rotation_period": "1s"}, {}],
        }
    )
    assert not checked.is_valid()
    flat = list(flatten_validation(checked.errors))
    names = [name for name, _reason, _message in flat]
    assert names == ["rotation_policy.next_rotation_at", "tags.1", "owners.1.rotation_period"], flat
    assert all("ErrorDetail" not in message and "{" not in message for _n, _r, message in flat)
    assert [reason for _n, reason, _m in flat] == ["format", "constraint", "required"]
    response = error_response(serializers.ValidationError(checked.errors))
    assert (
        response.status_code == 400
        and response.data["details"][0]["argument_name"] == "rotation_policy.next_rotation_at"
    )


def test_a_body_that_is_not_an_object_names_the_body(api):
    found = assert_scaleway_shape(send(api, "post", f"{SM}/secrets", "[1, 2]"))
    assert found["details"][0]["argument_name"] == "non_field_errors"


# --- deeply nested bodies ------------------------------------------------------------------------
NESTED = {
    "arrays": "[" * 5000,
    "objects": '{"a":' * 3000,
    "closed": "[" * 600 + "]" * 600,
    "inside a field": '{"name": ' + "[" * 5000 + "}",
}


def _endpoints(secret: str, key: str) -> list[tuple[str, str]]:
    """Every (method, path) of both APIs from the OpenAPI schema, path parameters filled in."""
    schema = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    values = {"region": "fr-par", "secret_id": secret, "key_id": key, "revision": "1"}
    found = []
    for path, operations in schema["paths"].items():
        if not path.startswith(("/secret-manager/", "/key-manager/")):
            continue
        filled = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)
        found += [(method, filled) for method in operations if method in ("post", "patch", "put")]
    return found


@pytest.mark.parametrize("shape", list(NESTED))
def test_deeply_nested_bodies_are_400_on_every_endpoint(api, secret_id, key_id, shape):
    endpoints = _endpoints(secret_id, key_id)
    assert len(endpoints) >= 20, endpoints
    started, refused = time.perf_counter(), 0
    for method, path in endpoints:
        response = send(api, method, path, NESTED[shape])
        # Endpoints that read no body (delete-key-material, …) answer as they would to any body.
        assert response.status_code < 500, (method, path, response.status_code, response.content[:300])
        if response.status_code >= 400:
            found = assert_scaleway_shape(response)
        if response.status_code == 400:
            assert found["type"] == "invalid_request_error" and "JSON" in found["message"], (method, path, found)
            refused += 1
    assert refused >= 12, refused  # every endpoint that reads a body
    assert time.perf_counter() - started < 30


def test_nesting_is_measured_in_linear_time():
    deep = b"[" * 1_000_000
    started = time.perf_counter()
    assert safejson.depth_exceeds(deep)
    assert safejson.depth_exceeds(b'{"a": "' + b"[" * 10 + b'", "b": ' + b"[" * 33 + b"]" * 33 + b"}")
    assert not safejson.depth_exceeds(b'{"a": "' + b"[" * 100_000 + b'"}')  # brackets inside a string
    assert not safejson.depth_exceeds(b"[" * 32 + b"]" * 32)
    assert not safejson.depth_exceeds(b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]')  # escaped quote
    assert time.perf_counter() - started < 2
    with pytest.raises(ValueError, match="deeper than 32"):
        safejson.loads("[" * 33 + "]" * 33)
    assert safejson.loads("[" * 32 + "]" * 32) == [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]


def test_a_deeply_nested_secret_payload_is_a_validation_error(api, project):
    response = send(api, "post", f"{SM}/secrets", {"name": "kv", "project_id": str(project.id), "type": "key_value"})
    assert response.status_code == 200, response.content
    found = send(api, "post", f"{SM}/secrets/{response.json()['id']}/versions", {"data": b64(b"[" * 5000)})
    assert found.status_code == 400 and assert_scaleway_shape(found)["details"][0]["argument_name"] == "data"


@pytest.mark.parametrize(
    ("path", "argument"),
    [
        (f"{SM}/secrets/not-a-uuid", "secret_id"),
        (f"{SM}/secrets/not-a-uuid/versions/1/access", "secret_id"),
        (f"{SM}/secrets?project_id=nope", "project_id"),
        (f"{KM}/keys/not-a-uuid", "key_id"),
        (f"{KM}/keys?project_id=nope", "project_id"),
    ],
)
def test_a_malformed_id_is_a_400_in_both_apis(api, path, argument):
    """As Scaleway answers (issue 13: the Secret Manager said 404, the Key Manager 400)."""
    response = api.get(path)
    body = assert_scaleway_shape(response)
    assert response.status_code == 400 and body["type"] == "invalid_arguments", body
    assert body["details"][0]["argument_name"] == argument, body
    missing = api.get(path.replace("not-a-uuid", str(uuid.uuid4())))
    assert path.endswith("nope") or missing.status_code == 404  # a well-formed unknown id: the uniform 404


def test_every_error_family_maps_to_a_scaleway_answer():
    """The hierarchies the one handler unifies: none of them is a 500 but tampered data."""
    from keys_app import errors as hierarchy
    from keys_app.errors import public_root_key_message
    from keys_app.services.jobs import JobBusy
    from keys_app.services.seal import ShareRefused
    from secrets_app.states import Expired
    from secrets_app.storage import SecretError

    expected = {
        SecretError("key k must be an enabled symmetric key"): (400, "invalid_arguments"),
        ShareRefused("share 2 is from another split"): (400, "invalid_arguments"),
        hierarchy.KeyDisabled("k", "disabled"): (412, "precondition_failed"),
        hierarchy.KeyMaterialUnavailable("gone"): (410, "resource_expired"),
        hierarchy.RootKeyError("sealed"): (503, "sealed"),
        hierarchy.NotInitialised(): (503, "sealed"),
        JobBusy("busy"): (409, "conflict"),
        hierarchy.IntegrityCheckFailed("tampered"): (500, "integrity_error"),
        Expired("secret_version", "x"): (410, "resource_expired"),
    }
    for exc, (status, kind) in expected.items():
        response = error_response(exc)
        assert (response.status_code, response.data["type"]) == (status, kind), exc
        if kind == "sealed":  # the state in words; the provider's own text (paths, modules) stays in the log
            assert response.data["message"] == public_root_key_message(exc)
        else:
            assert response.data["message"] == str(exc) or kind == "resource_expired"
    disabled = error_response(hierarchy.KeyDisabled("k", "disabled")).data
    assert disabled["precondition"] == "resource_not_usable" and disabled["help_message"] == disabled["message"]
    assert error_response(ValueError("unexpected")) is None  # the handler answers a generic 500 for these
