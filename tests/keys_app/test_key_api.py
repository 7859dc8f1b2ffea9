"""Key Manager v1alpha1 over HTTP (DRF APIClient, X-Auth-Token): shapes, errors, and never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from scaleway.key_manager.v1alpha1 import marshalling as m

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
BASE = "/key-manager/v1alpha1/regions/fr-par"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client_for(project, role: str | None, name: str) -> APIClient:
    operator = Principal.for_command()
    user = get_user_model().objects.create_user(name)
    if role:
        role_grant(principal=operator, user=user, role=role, obj=project)
    issued = api_key_create(principal=operator, user=user, project=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client


@pytest.fixture
def api(project):
    return client_for(project, "project_admin", "owner")


def post(api, path: str, body: dict | None = None):
    return api.post(f"{BASE}{path}", data=json.dumps(body or {}), content_type="application/json")


def create(api, project, **body):
    response = post(api, "/keys", {"project_id": str(project.id), **body})
    assert response.status_code == 200, response.content
    return response.json()


def test_key_shape_is_what_the_sdk_unmarshals(api, project):
    body = create(
        api,
        project,
        name="orders",
        tags=["a"],
        description="d",
        usage={"symmetric_encryption": "aes_256_gcm"},
        rotation_policy={"rotation_period": "86400s"},
    )
    key = m.unmarshal_Key(body)
    assert key.name == "orders" and key.state == "enabled" and key.protected and not key.locked
    assert key.usage.symmetric_encryption == "aes_256_gcm" and key.origin == "scaleway_kms"
    assert key.region == "fr-par" and key.rotation_policy.rotation_period == "86400s"
    assert key.rotation_policy.next_rotation_at is not None and body["created_at"].endswith("Z")
    assert api.get(f"{BASE}/keys/{key.id}").json() == body
    listed = m.unmarshal_ListKeysResponse(api.get(f"{BASE}/keys", {"project_id": str(project.id)}).json())
    assert key.id in {k.id for k in listed.keys} and listed.total_count >= 2  # with the project's default key
    patched = api.patch(
        f"{BASE}/keys/{key.id}",
        data=json.dumps({"name": "renamed", "rotation_policy": {}}),
        content_type="application/json",
    ).json()
    assert patched["name"] == "renamed" and patched["rotation_policy"] is None


def test_lifecycle_endpoints(api, project):
    key_id = create(api, project)["id"]
    assert post(api, f"/keys/{key_id}/disable").json()["state"] == "disabled"
    assert post(api, f"/keys/{key_id}/enable").json()["state"] == "enabled"
    refused = api.delete(f"{BASE}/keys/{key_id}")
    assert refused.status_code == 412 and refused.json()["type"] == "precondition_failed"
    assert post(api, f"/keys/{key_id}/unprotect").json()["protected"] is False
    assert api.delete(f"{BASE}/keys/{key_id}").status_code == 204
    assert api.get(f"{BASE}/keys/{key_id}").json()["state"] == "scheduled_for_deletion"
    scheduled = api.get(f"{BASE}/keys", {"scheduled_for_deletion": "True"}).json()
    assert [k["id"] for k in scheduled["keys"]] == [key_id]
    assert post(api, f"/keys/{key_id}/restore").json()["state"] == "enabled"
    assert post(api, f"/keys/{key_id}/protect").json()["protected"] is True
    rotated = post(api, f"/keys/{key_id}/rotate").json()
    assert rotated["rotation_count"] == 1 and rotated["rotated_at"]


def test_encrypt_rotate_decrypt_and_data_keys(api, project):
    key_id = create(api, project)["id"]
    encrypted = post(api, f"/keys/{key_id}/encrypt", {"plaintext": b64(b"hi"), "associated_data": b64(b"ad")})
    assert encrypted.status_code == 200 and encrypted.json()["key_id"] == key_id
    ciphertext = encrypted.json()["ciphertext"]
    post(api, f"/keys/{key_id}/rotate")
    decrypted = m.unmarshal_DecryptResponse(
        post(api, f"/keys/{key_id}/decrypt", {"ciphertext": ciphertext, "associated_data": b64(b"ad")}).json()
    )
    assert base64.b64decode(decrypted.plaintext) == b"hi" and decrypted.ciphertext
    fresh = post(api, f"/keys/{key_id}/decrypt", {"ciphertext": decrypted.ciphertext, "associated_data": b64(b"ad")})
    assert fresh.json()["ciphertext"] is None
    wrong = post(api, f"/keys/{key_id}/decrypt", {"ciphertext": ciphertext})
    assert wrong.status_code == 400 and wrong.json()["type"] == "invalid_arguments"
    data_key = m.unmarshal_DataKey(post(api, f"/keys/{key_id}/generate-data-key", {}).json())
    assert data_key.algorithm == "aes_256_gcm" and len(base64.b64decode(data_key.plaintext)) == 32
    opened = post(api, f"/keys/{key_id}/decrypt", {"ciphertext": data_key.ciphertext}).json()
    assert opened["plaintext"] == data_key.plaintext
    bare = post(api, f"/keys/{key_id}/generate-data-key", {"without_plaintext": True}).json()
    assert bare["plaintext"] is None and bare["ciphertext"]


def test_sign_verify_and_public_key(api, project):
    key_id = create(api, project, usage={"asymmetric_signing": "ec_p256_sha256"})["id"]
    digest = hashlib.sha256(b"message").digest()
    signature = post(api, f"/keys/{key_id}/sign", {"digest": b64(digest)}).json()["signature"]
    pem = m.unmarshal_PublicKey(api.get(f"{BASE}/keys/{key_id}/public-key").json()).pem
    public = serialization.load_pem_public_key(pem.encode())
    public.verify(base64.b64decode(signature), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    verdict = post(api, f"/keys/{key_id}/verify", {"digest": b64(digest), "signature": signature}).json()
    assert verdict == {"key_id": key_id, "valid": True}
    bad = post(api, f"/keys/{key_id}/verify", {"digest": b64(b"\x00" * 32), "signature": signature}).json()
    assert bad["valid"] is False


def test_import_and_delete_key_material(api, project):
    key_id = create(api, project, origin="external", unprotected=True)["id"]
    assert api.get(f"{BASE}/keys/{key_id}").json()["state"] == "pending_key_material"
    body = {"key_material": b64(b"k" * 32), "salt": b64(b"salt")}
    imported = post(api, f"/keys/{key_id}/import-key-material", body).json()
    assert imported["state"] == "enabled" and imported["origin"] == "external"
    assert post(api, f"/keys/{key_id}/encrypt", {"plaintext": b64(b"x")}).status_code == 200
    assert post(api, f"/keys/{key_id}/delete-key-material").status_code == 204
    assert api.get(f"{BASE}/keys/{key_id}").json()["state"] == "pending_key_material"


def test_wrap_unwrap_and_algorithms(api, project):
    key_id = create(api, project, usage={"asymmetric_encryption": "ml_kem_768"})["id"]
    wrapped = m.unmarshal_WrapKeyResponse(post(api, f"/keys/{key_id}/wrap", {"plaintext": b64(b"dek")}).json())
    unwrapped = post(api, f"/keys/{key_id}/unwrap", {"ciphertext": wrapped.ciphertext}).json()
    assert base64.b64decode(unwrapped["plaintext"]) == b"dek"
    algorithms = m.unmarshal_ListAlgorithmsResponse(api.get(f"{BASE}/algorithms").json()).algorithms
    assert {"usage": "symmetric_encryption", "name": "aes_256_gcm", "recommended": True} in [
        vars(a) for a in algorithms
    ]
    signing = api.get(f"{BASE}/algorithms", {"usages": ["asymmetric_signing"]}).json()["algorithms"]
    assert signing and all(a["usage"] == "asymmetric_signing" for a in signing)


def test_errors_in_the_scaleway_shape(api, project):
    key_id = create(api, project)["id"]
    missing = api.get(f"{BASE}/keys/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    assert api.get(f"{BASE}/keys/not-a-uuid").status_code == 400
    assert api.get(f"/key-manager/v1alpha1/regions/mars-1/keys/{key_id}").status_code == 400
    other_region = api.get(f"/key-manager/v1alpha1/regions/nl-ams/keys/{key_id}")
    assert other_region.status_code == 404
    validation = post(api, f"/keys/{key_id}/encrypt", {"plaintext": "%%%"})
    assert validation.status_code == 400
    assert validation.json()["message"] == "Validation Error" and "plaintext" in validation.json()["fields"]
    unknown = api.get("/key-manager/v1alpha1/regions/fr-par/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["type"] == "not_found"
    assert api.put(f"{BASE}/keys/{key_id}", data="{}", content_type="application/json").status_code == 405
    anonymous = APIClient().get(f"{BASE}/keys")
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "denied_authentication"
    usage = post(
        api, "/keys", {"project_id": str(project.id), "usage": {"symmetric_encryption": "unknown_symmetric_encryption"}}
    )
    assert usage.status_code == 400 and "other KeyUsage fields" in usage.content.decode()


def test_strangers_get_404_and_readers_403(project, other_project, api):
    key_id = create(api, project)["id"]
    stranger = client_for(other_project, "project_admin", "charlie")
    assert stranger.get(f"{BASE}/keys/{key_id}").status_code == 404
    assert post(stranger, f"/keys/{key_id}/encrypt", {"plaintext": b64(b"x")}).status_code == 404
    assert stranger.get(f"{BASE}/keys").json()["keys"] == [] or all(
        k["project_id"] == str(other_project.id) for k in stranger.get(f"{BASE}/keys").json()["keys"]
    )
    auditor = client_for(project, "auditor", "dave")
    assert auditor.get(f"{BASE}/keys/{key_id}").status_code == 200
    denied = post(auditor, f"/keys/{key_id}/encrypt", {"plaintext": b64(b"x")})
    assert denied.status_code == 403 and denied.json()["type"] == "permissions_denied"
    assert post(auditor, "/keys", {"project_id": str(project.id)}).status_code == 403


# --- bad input never answers 5xx -----------------------------------------------------------------
ACTIONS = [
    "encrypt",
    "decrypt",
    "generate-data-key",
    "sign",
    "verify",
    "import-key-material",
    "wrap",
    "unwrap",
    "rotate",
    "protect",
    "unprotect",
    "enable",
    "disable",
    "restore",
    "delete-key-material",
]
BAD_BODIES = [
    b"not json",
    b"[]",
    b"null",
    b"42",
    b'"string"',
    b"{",
    json.dumps({"plaintext": 5, "ciphertext": [], "digest": {}, "signature": None}).encode(),
    json.dumps({"plaintext": "%%%", "ciphertext": "=", "associated_data": "***", "key_material": "a"}).encode(),
    json.dumps({"plaintext": "", "ciphertext": "", "digest": "", "key_material": ""}).encode(),
    json.dumps({"plaintext": b64(b"x" * 70_000), "ciphertext": b64(b"\x01" * 140_000)}).encode(),
    json.dumps({"without_plaintext": "maybe", "algorithm": 7, "salt": 3}).encode(),
    json.dumps({"digest": b64(b"\x00" * 32), "signature": b64(b"\x00" * 5000)}).encode(),
    json.dumps({"ciphertext": b64(b"\x01\x00\x00\x00\x01" + b"\x00" * 40)}).encode(),
    json.dumps({"ciphertext": b64(b"\x01\xff\xff\xff\xff" + b"\x00" * 40)}).encode(),
    json.dumps({"a": {"b": {"c": [1, 2, {"d": None}]}}}).encode(),
    ("{" + '"x": "' + "y" * 3_000_000 + '"}').encode(),
]
CREATE_BODIES = [
    {"usage": "symmetric"},
    {"usage": {"symmetric_encryption": "aes_256_gcm", "asymmetric_signing": "ec_p256_sha256"}},
    {"usage": {"quantum": "x"}},
    {"usage": {"asymmetric_signing": 5}},
    {"rotation_policy": "weekly"},
    {"rotation_policy": {"rotation_period": "abc"}},
    {"rotation_policy": {"rotation_period": "1s"}},
    {"rotation_policy": {"rotation_period": "99999999999999999999s"}},
    {"rotation_policy": {"next_rotation_at": "tomorrow"}},
    {"rotation_policy": {"next_rotation_at": "2030-01-01T00:00:00Z"}},
    {"tags": "x"},
    {"tags": [1, None]},
    {"tags": ["x" * 500]},
    {"name": 12},
    {"name": "x" * 300},
    {"origin": "moon"},
    {"origin": "external", "usage": {"asymmetric_signing": "ec_p256_sha256"}},
    {"project_id": "nope"},
    {"project_id": str(uuid.uuid4())},
    {"unprotected": "perhaps"},
    {"description": ["x"]},
]


def _assert_scaleway_error(response):
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        body = response.json()
        assert "message" in body and "Traceback" not in response.content.decode(errors="ignore")


@pytest.mark.parametrize("action", ACTIONS)
def test_malformed_bodies_never_answer_5xx(api, project, action):
    symmetric = create(api, project)["id"]
    signing = create(api, project, usage={"asymmetric_signing": "ec_p256_sha256"})["id"]
    kem = create(api, project, usage={"asymmetric_encryption": "ml_kem_768"})["id"]
    for key_id in (symmetric, signing, kem, "not-a-uuid", str(uuid.uuid4())):
        for body in BAD_BODIES:
            response = api.post(f"{BASE}/keys/{key_id}/{action}", data=body, content_type="application/json")
            _assert_scaleway_error(response)


def test_malformed_create_update_and_list_never_answer_5xx(api, project):
    key_id = create(api, project)["id"]
    for body in CREATE_BODIES:
        _assert_scaleway_error(post(api, "/keys", {"project_id": str(project.id), **body}))
        patch = api.patch(f"{BASE}/keys/{key_id}", data=json.dumps(body), content_type="application/json")
        _assert_scaleway_error(patch)
    for body in BAD_BODIES:
        _assert_scaleway_error(api.post(f"{BASE}/keys", data=body, content_type="application/json"))
    for params in (
        {"page": "-1"},
        {"page": "abc"},
        {"page_size": "1000"},
        {"scheduled_for_deletion": "maybe"},
        {"order_by": "chaos"},
        {"project_id": "x"},
        {"organization_id": "y"},
        {"usage": "psychic"},
        {"tags": ["", "x"]},
        {"name": "\x00"},
    ):
        _assert_scaleway_error(api.get(f"{BASE}/keys", params))
    _assert_scaleway_error(api.get(f"{BASE}/algorithms", {"usages": "nonsense"}))
    _assert_scaleway_error(api.post(f"{BASE}/keys", data=b"\xff\xfe", content_type="application/json"))
    _assert_scaleway_error(api.post(f"{BASE}/keys", data=b"a=b", content_type="application/x-www-form-urlencoded"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = [
    "plaintext",
    "ciphertext",
    "associated_data",
    "digest",
    "signature",
    "key_material",
    "salt",
    "without_plaintext",
    "algorithm",
    "name",
    "tags",
    "usage",
    "rotation_policy",
    "origin",
    "unprotected",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/keys", *[f"/keys/{{key}}/{a}" for a in ACTIONS]]),
    body=st.dictionaries(st.sampled_from(_FIELDS), _json | st.binary(max_size=64).map(b64), max_size=5),
)
def test_fuzzed_bodies_never_answer_5xx(api, project, path, body):
    key_id = getattr(test_fuzzed_bodies_never_answer_5xx, "_key", None)
    if key_id is None or api.get(f"{BASE}/keys/{key_id}").status_code != 200:
        key_id = create(api, project)["id"]
        test_fuzzed_bodies_never_answer_5xx._key = key_id  # type: ignore[attr-defined]
    _assert_scaleway_error(post(api, path.format(key=key_id), body))
