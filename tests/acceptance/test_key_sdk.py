"""Acceptance: every KeyManagerV1Alpha1API method through the official Scaleway SDK, against a live server."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scaleway.key_manager.v1alpha1 import KeyManagerV1Alpha1API
from scaleway.key_manager.v1alpha1.types import KeyRotationPolicy, KeyUsage, ListKeysRequestOrderBy
from scaleway_core.api import ScalewayException

from tests.live import sdk_client

pytestmark = pytest.mark.slow

SIGNING = [
    "ec_p256_sha256",
    "ec_p384_sha384",
    "rsa_pss_2048_sha256",
    "rsa_pss_3072_sha256",
    "rsa_pss_4096_sha256",
    "rsa_pkcs1_2048_sha256",
    "rsa_pkcs1_3072_sha256",
    "rsa_pkcs1_4096_sha256",
    "ml_dsa_44",
    "ml_dsa_65",
    "ml_dsa_87",
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def usage(**one: str) -> KeyUsage:
    """A KeyUsage naming one algorithm (the SDK's defaults would send ``unknown_*`` for the others)."""
    return KeyUsage(
        symmetric_encryption=one.get("symmetric_encryption"),
        asymmetric_encryption=one.get("asymmetric_encryption"),
        asymmetric_signing=one.get("asymmetric_signing"),
    )


@pytest.fixture(scope="module")
def credentials(hkms_server):
    return hkms_server.create_api_key(
        "--user", "kapp", "--create-user", "--create-project", "keys", "--role", "project_admin"
    )


@pytest.fixture(scope="module")
def api(hkms_server, credentials):
    return KeyManagerV1Alpha1API(sdk_client(hkms_server, credentials))


@pytest.fixture(scope="module")
def symmetric(api):
    return api.create_key(unprotected=False, name="orders", usage=usage(symmetric_encryption="aes_256_gcm"))


def status_of(call) -> int:
    with pytest.raises(ScalewayException) as info:
        call()
    return int(info.value.status_code or 0)


def test_list_algorithms(api):
    algorithms = api.list_algorithms().algorithms
    names = {a.name for a in algorithms}
    assert {"aes_256_gcm", "rsa_oaep_3072_sha256", "ml_kem_768", "ml_dsa_87", *SIGNING} <= names
    assert any(a.name == "aes_256_gcm" and a.recommended for a in algorithms)
    signing = api.list_algorithms(usages=["asymmetric_signing"]).algorithms
    assert {a.name for a in signing} == set(SIGNING)


def test_create_get_update_list(api, credentials, symmetric):
    assert symmetric.state == "enabled" and symmetric.protected and symmetric.project_id == credentials["project_id"]
    assert symmetric.usage.symmetric_encryption == "aes_256_gcm" and symmetric.origin == "scaleway_kms"
    assert api.get_key(key_id=symmetric.id).name == "orders"
    created = api.create_key(
        unprotected=True,
        name="scheduled",
        description="rotates daily",
        tags=["team-a", "prod"],
        rotation_policy=KeyRotationPolicy(rotation_period="86400s"),
    )
    assert created.rotation_policy.rotation_period == "86400s" and created.rotation_policy.next_rotation_at
    updated = api.update_key(
        key_id=created.id,
        name="scheduled-weekly",
        tags=["team-a"],
        rotation_policy=KeyRotationPolicy(rotation_period="604800s"),
    )
    assert (updated.name, updated.tags, updated.rotation_policy.rotation_period) == (
        "scheduled-weekly",
        ["team-a"],
        "604800s",
    )
    listed = api.list_keys(scheduled_for_deletion=False, tags=["team-a"])
    assert [k.id for k in listed.keys] == [created.id] and listed.total_count == 1
    everything = api.list_keys_all(scheduled_for_deletion=False, page_size=1, order_by=ListKeysRequestOrderBy.NAME_ASC)
    names = [k.name for k in everything]
    assert names == sorted(names) and {"orders", "scheduled-weekly"} <= set(names)
    assert api.list_keys(scheduled_for_deletion=False, name="weekly").keys[0].id == created.id
    with pytest.raises(ScalewayException):
        api.update_key(key_id=created.id, rotation_policy=KeyRotationPolicy(rotation_period="60s"))


def test_encrypt_rotate_decrypt_old_ciphertext(api, symmetric):
    old = api.encrypt(key_id=symmetric.id, plaintext=b64(b"order #42"), associated_data=b64(b"tenant-7"))
    assert old.key_id == symmetric.id
    rotated = api.rotate_key(key_id=symmetric.id)
    assert rotated.rotation_count == symmetric.rotation_count + 1 and rotated.rotated_at is not None
    out = api.decrypt(key_id=symmetric.id, ciphertext=old.ciphertext, associated_data=b64(b"tenant-7"))
    assert unb64(out.plaintext) == b"order #42"
    assert out.ciphertext  # re-encrypted under the newest version
    again = api.decrypt(key_id=symmetric.id, ciphertext=out.ciphertext, associated_data=b64(b"tenant-7"))
    assert unb64(again.plaintext) == b"order #42" and again.ciphertext is None
    assert status_of(lambda: api.decrypt(key_id=symmetric.id, ciphertext=old.ciphertext)) == 400


def test_envelope_encryption_with_data_keys(api, symmetric):
    data_key = api.generate_data_key(key_id=symmetric.id, without_plaintext=False)
    assert data_key.algorithm == "aes_256_gcm" and data_key.plaintext
    nonce = os.urandom(12)
    local = AESGCM(unb64(data_key.plaintext)).encrypt(nonce, b"a large file", None)
    # Later: only the wrapped data key was stored; Key Manager unwraps it.
    recovered = unb64(api.decrypt(key_id=symmetric.id, ciphertext=data_key.ciphertext).plaintext)
    assert AESGCM(recovered).decrypt(nonce, local, None) == b"a large file"
    bare = api.generate_data_key(key_id=symmetric.id, without_plaintext=True)
    assert bare.plaintext is None
    assert len(unb64(api.decrypt(key_id=symmetric.id, ciphertext=bare.ciphertext).plaintext)) == 32


def test_protect_disable_delete_restore(api):
    key = api.create_key(unprotected=False, name="lifecycle")
    blob = api.encrypt(key_id=key.id, plaintext=b64(b"x")).ciphertext
    assert api.disable_key(key_id=key.id).state == "disabled"
    assert status_of(lambda: api.encrypt(key_id=key.id, plaintext=b64(b"x"))) == 412
    assert status_of(lambda: api.decrypt(key_id=key.id, ciphertext=blob)) == 412
    assert status_of(lambda: api.generate_data_key(key_id=key.id, without_plaintext=False)) == 412
    assert api.enable_key(key_id=key.id).state == "enabled"
    assert status_of(lambda: api.delete_key(key_id=key.id)) == 412  # protected
    assert api.unprotect_key(key_id=key.id).protected is False
    api.delete_key(key_id=key.id)
    deleted = api.get_key(key_id=key.id)
    assert deleted.state == "scheduled_for_deletion" and deleted.deletion_requested_at is not None
    assert key.id in {k.id for k in api.list_keys(scheduled_for_deletion=True).keys}
    assert api.restore_key(key_id=key.id).state == "enabled"
    assert api.protect_key(key_id=key.id).protected is True
    assert unb64(api.decrypt(key_id=key.id, ciphertext=blob).plaintext) == b"x"


@pytest.mark.parametrize("algorithm", SIGNING)
def test_sign_and_verify(api, algorithm):
    key = api.create_key(unprotected=True, name=algorithm, usage=usage(asymmetric_signing=algorithm))
    message = b"release v1.2.3"
    digest = hashlib.sha384(message).digest() if algorithm.endswith("sha384") else hashlib.sha256(message).digest()
    signed = api.sign(key_id=key.id, digest=b64(digest))
    assert api.verify(key_id=key.id, digest=b64(digest), signature=signed.signature).valid is True
    wrong = hashlib.sha384(b"x").digest() if algorithm.endswith("sha384") else hashlib.sha256(b"x").digest()
    assert api.verify(key_id=key.id, digest=b64(wrong), signature=signed.signature).valid is False
    public = serialization.load_pem_public_key(api.get_public_key(key_id=key.id).pem.encode())
    signature = unb64(signed.signature)
    if algorithm.startswith("ec_"):
        chosen = hashes.SHA384() if algorithm.endswith("sha384") else hashes.SHA256()
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(chosen)))
    elif algorithm.startswith("rsa_pss"):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        public.verify(signature, digest, pss, utils.Prehashed(hashes.SHA256()))
    elif algorithm.startswith("rsa_pkcs1"):
        public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    else:
        public.verify(signature, digest)


def test_rsa_oaep_encrypt_outside_decrypt_inside(api):
    key = api.create_key(unprotected=True, usage=usage(asymmetric_encryption="rsa_oaep_3072_sha256"))
    public = serialization.load_pem_public_key(api.get_public_key(key_id=key.id).pem.encode())
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ciphertext = public.encrypt(b"made outside", oaep)
    assert unb64(api.decrypt(key_id=key.id, ciphertext=b64(ciphertext)).plaintext) == b"made outside"
    inside = api.encrypt(key_id=key.id, plaintext=b64(b"made inside")).ciphertext
    assert unb64(api.decrypt(key_id=key.id, ciphertext=inside).plaintext) == b"made inside"


@pytest.mark.parametrize("algorithm", ["ml_kem_768", "ml_kem_1024"])
def test_wrap_and_unwrap(api, algorithm):
    key = api.create_key(unprotected=True, usage=usage(asymmetric_encryption=algorithm))
    dek = os.urandom(32)
    wrapped = api.wrap_key(key_id=key.id, plaintext=b64(dek), associated_data=b64(b"bucket-1"))
    assert wrapped.key_id == key.id
    unwrapped = api.unwrap_key(key_id=key.id, ciphertext=wrapped.ciphertext, associated_data=b64(b"bucket-1"))
    assert unb64(unwrapped.plaintext) == dek
    assert status_of(lambda: api.unwrap_key(key_id=key.id, ciphertext=wrapped.ciphertext)) == 400


def test_import_and_delete_key_material(api):
    key = api.create_key(unprotected=True, name="byok", origin="external")
    assert key.state == "pending_key_material" and key.origin == "external"
    assert status_of(lambda: api.encrypt(key_id=key.id, plaintext=b64(b"x"))) == 412
    imported = api.import_key_material(key_id=key.id, key_material=b64(os.urandom(32)), salt=b64(os.urandom(16)))
    assert imported.state == "enabled"
    blob = api.encrypt(key_id=key.id, plaintext=b64(b"bring your own key")).ciphertext
    assert unb64(api.decrypt(key_id=key.id, ciphertext=blob).plaintext) == b"bring your own key"
    api.delete_key_material(key_id=key.id)
    assert api.get_key(key_id=key.id).state == "pending_key_material"
    api.import_key_material(key_id=key.id, key_material=b64(os.urandom(32)))
    assert status_of(lambda: api.decrypt(key_id=key.id, ciphertext=blob)) == 410  # crypto-shredded


def test_errors_reach_the_sdk_as_scaleway_errors(api, symmetric):
    assert status_of(lambda: api.get_key(key_id=str(uuid.uuid4()))) == 404
    assert status_of(lambda: api.get_key(key_id="not-a-uuid")) == 400
    assert status_of(lambda: api.encrypt(key_id=symmetric.id, plaintext="***")) == 400
    assert status_of(lambda: api.get_public_key(key_id=symmetric.id)) == 412
    assert status_of(lambda: api.get_key(key_id=symmetric.id, region="nl-ams")) == 404


def test_every_sdk_method_is_exercised_here():
    import inspect
    import re

    methods = {
        name
        for name, _ in inspect.getmembers(KeyManagerV1Alpha1API, inspect.isfunction)
        if not name.startswith("_") and name in vars(KeyManagerV1Alpha1API)
    }
    used = set(re.findall(r"\bapi\.(\w+)\(", inspect.getsource(inspect.getmodule(test_list_algorithms))))
    assert len(methods) >= 23 and methods - used == set()


def test_secret_bound_to_a_customer_key_follows_the_key_state(hkms_server, credentials, api):
    """A secret whose KEK is a customer key: disabling the key stops access, enabling restores it."""
    from scaleway.secret.v1beta1 import SecretV1Beta1API

    secrets = SecretV1Beta1API(sdk_client(hkms_server, credentials))
    key = api.create_key(unprotected=True, name="customer-kek")
    secret = secrets.create_secret(name="db-password", protected=False, key_id=key.id)
    assert secret.key_id == key.id
    secrets.create_secret_version(secret_id=secret.id, data=b64(b"hunter2"))

    def read() -> bytes:
        return unb64(secrets.access_secret_version(secret_id=secret.id, revision="latest").data)

    assert read() == b"hunter2"
    api.disable_key(key_id=key.id)
    assert status_of(read) == 412
    assert status_of(lambda: secrets.create_secret_version(secret_id=secret.id, data=b64(b"new"))) >= 400
    api.enable_key(key_id=key.id)
    assert read() == b"hunter2"
    # Rotating the key leaves the secret readable; its DEK stays on the old version until rewrap_deks.
    api.rotate_key(key_id=key.id)
    assert read() == b"hunter2"
    hkms_server.manage("rewrap_deks", "--key", key.id)
    assert read() == b"hunter2"
    # Another project's key, or a signing key, cannot protect a secret.
    signing = api.create_key(unprotected=True, usage=usage(asymmetric_signing="ec_p256_sha256"))
    assert status_of(lambda: secrets.create_secret(name="bad", protected=False, key_id=signing.id)) == 400
