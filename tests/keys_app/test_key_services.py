"""Key Manager services: lifecycle, use, rotation, import, shredding, access control and audit."""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.contrib.auth import get_user_model
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from hkms_core.errors import InvalidArgument, ObjectNotFound, PermissionDenied, PreconditionFailed
from hkms_core.lifecycle import DELETION_DELAY
from keys_app import asymmetric, crypto
from keys_app.errors import KeyDisabled, KeyMaterialUnavailable
from keys_app.models import Dek, KekVersion, Key, KeyState
from keys_app.services.keys import lifecycle, use
from keys_app.services.keys.key_material import key_delete_key_material, key_import_key_material
from keys_app.services.keys.lifecycle import (
    key_delete,
    key_disable,
    key_enable,
    key_protect,
    key_restore,
    key_rotate,
    key_unprotect,
)
from keys_app.services.keys.metadata import key_create, key_get, key_list, key_update
from keys_app.services.keys.scheduling import keys_purge_deleted
from keys_app.services.keys.use import (
    key_decrypt,
    key_encrypt,
    key_generate_data_key,
    key_get_public_key,
    key_list_algorithms,
    key_sign,
    key_unwrap,
    key_verify,
    key_wrap,
)
from keys_app.services.keys.validation import RotationPolicy
from keys_app.services.material import kek_material
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_version_payload

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

SIGNING = [a.name for a in asymmetric.ALGORITHMS.values() if a.usage == "asymmetric_signing"]
RSA_OAEP = [a.name for a in asymmetric.ALGORITHMS.values() if a.family == "rsa_oaep"]
ML_KEM = [a.name for a in asymmetric.ALGORITHMS.values() if a.family == "ml_kem"]


@pytest.fixture
def operator():
    return Principal.for_command()


def _user_with(operator, name, role=None, obj=None):
    user = get_user_model().objects.create_user(name)
    if role is not None:
        role_grant(principal=operator, user=user, role=role, obj=obj)
    return Principal(user=user)


@pytest.fixture
def admin(operator, project):
    return _user_with(operator, "alice", "project_admin", project)


@pytest.fixture
def stranger(hierarchy):
    return Principal(user=get_user_model().objects.create_user("charlie"))


@pytest.fixture
def key(admin, project):
    return key_create(principal=admin, project_id=project.id, name="orders")


def payload_of(version_id):
    version = SecretVersion.objects.select_related("secret__key").get(id=version_id)
    return secret_version_payload(version)


# --- create, read, update --------------------------------------------------------------------------
def test_create_symmetric_key_stores_only_wrapped_material(admin, project):
    key = key_create(principal=admin, project_id=project.id, name="k", tags=["a", "b"], description="d")
    assert (key.usage, key.algorithm, key.state, key.origin) == (
        "symmetric_encryption",
        "aes_256_gcm",
        "enabled",
        "scaleway_kms",
    )
    assert key.protected and key.primary_version == 1 and key.region == "fr-par"
    row = KekVersion.objects.using("kek").get(key_id=key.id, version=1)
    material = kek_material(key.id, 1).reveal()
    assert len(material) == 32 and material not in bytes(row.wrapped_material)
    assert AuditEvent.objects.filter(action="key.create", object_id=str(key.id), outcome="allowed").exists()


def test_create_needs_key_admin_on_the_project(operator, project, other_project, stranger):
    user = _user_with(operator, "bob", "key_user", project)
    with pytest.raises(PermissionDenied):
        key_create(principal=user, project_id=project.id)
    with pytest.raises(ObjectNotFound):
        key_create(principal=user, project_id=other_project.id)
    with pytest.raises(ObjectNotFound):
        key_create(principal=stranger, project_id=project.id)
    assert AuditEvent.objects.filter(action="key.create", outcome="denied").count() == 3


@pytest.mark.parametrize(
    ("usage", "algorithm"),
    [
        ("symmetric_encryption", "unknown_symmetric_encryption"),
        ("symmetric_encryption", "rsa_oaep_2048_sha256"),
        ("asymmetric_signing", "aes_256_gcm"),
        ("asymmetric_signing", None),
        ("nonsense", "aes_256_gcm"),
        ("asymmetric_encryption", "rsa_oaep_1024_sha256"),
    ],
)
def test_create_refuses_bad_usage_and_algorithm(admin, project, usage, algorithm):
    with pytest.raises(InvalidArgument):
        key_create(principal=admin, project_id=project.id, usage=usage, algorithm=algorithm)


def test_create_validates_rotation_policy(admin, project):
    now = timezone.now()
    for period in (timedelta(hours=23), timedelta(days=365 * 101)):
        with pytest.raises(InvalidArgument):
            key_create(principal=admin, project_id=project.id, rotation_policy=RotationPolicy(period))
    with pytest.raises(InvalidArgument):
        key_create(
            principal=admin,
            project_id=project.id,
            usage="asymmetric_signing",
            algorithm="ec_p256_sha256",
            rotation_policy=RotationPolicy(timedelta(days=30)),
        )
    key = key_create(
        principal=admin, project_id=project.id, rotation_policy=RotationPolicy(timedelta(days=30)), now=now
    )
    assert key.rotation_period == timedelta(days=30) and key.next_rotation_at == now + timedelta(days=30)


def test_update_changes_metadata_and_clears_the_policy(admin, key):
    key = key_update(
        principal=admin,
        key_id=key.id,
        name="renamed",
        tags=["x", "x", "y"],
        rotation_policy=RotationPolicy(timedelta(days=1)),
    )
    assert (key.name, key.tags, key.rotation_period) == ("renamed", ["x", "y"], timedelta(days=1))
    key = key_update(principal=admin, key_id=key.id, rotation_policy=RotationPolicy(None))
    assert key.rotation_period is None and key.next_rotation_at is None
    with pytest.raises(InvalidArgument):
        key_update(principal=admin, key_id=key.id, name="x" * 256)


def test_ids_and_regions(admin, key):
    with pytest.raises(InvalidArgument):
        key_get(principal=admin, key_id="not-a-uuid")
    with pytest.raises(ObjectNotFound):
        key_get(principal=admin, key_id=key.id, region="nl-ams")
    assert key_get(principal=admin, key_id=str(key.id).upper(), region="fr-par") == key


# --- encrypt / decrypt / data keys ---------------------------------------------------------------
def test_encrypt_decrypt_round_trip_with_associated_data(admin, key):
    one = key_encrypt(principal=admin, key_id=key.id, plaintext=b"hello", associated_data=b"ctx")
    two = key_encrypt(principal=admin, key_id=key.id, plaintext=b"hello", associated_data=b"ctx")
    assert one.data != two.data  # a fresh server-chosen nonce each time
    assert crypto.key_version_of(one.data) == 1
    out = key_decrypt(principal=admin, key_id=key.id, ciphertext=one.data, associated_data=b"ctx")
    assert out.data == b"hello" and out.reencrypted is None
    for bad in (
        {"ciphertext": one.data, "associated_data": b"other"},
        {"ciphertext": one.data},
        {"ciphertext": one.data[:-1] + bytes([one.data[-1] ^ 1]), "associated_data": b"ctx"},
        {"ciphertext": one.data[:10]},
        {"ciphertext": b"\x01\x00\x00\x00\x07" + one.data[5:], "associated_data": b"ctx"},
    ):
        with pytest.raises(InvalidArgument):
            key_decrypt(principal=admin, key_id=key.id, **bad)
    assert b"hello" not in repr(out).encode() and "hello" not in repr(one)


def test_ciphertexts_are_bound_to_their_key(admin, project, key):
    other = key_create(principal=admin, project_id=project.id)
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=b"x").data
    with pytest.raises(InvalidArgument):
        key_decrypt(principal=admin, key_id=other.id, ciphertext=blob)


def test_size_limits(admin, key):
    for bad in (b"", b"x" * 65_536):
        with pytest.raises(InvalidArgument):
            key_encrypt(principal=admin, key_id=key.id, plaintext=bad)
    big = key_encrypt(principal=admin, key_id=key.id, plaintext=b"x" * 65_535).data
    assert key_decrypt(principal=admin, key_id=key.id, ciphertext=big).data == b"x" * 65_535
    with pytest.raises(InvalidArgument):
        key_decrypt(principal=admin, key_id=key.id, ciphertext=b"\x01" * 131_072)


def test_rotation_keeps_old_ciphertexts_and_reencrypts_them(admin, key):
    old = key_encrypt(principal=admin, key_id=key.id, plaintext=b"secret", associated_data=b"a").data
    key = key_rotate(principal=admin, key_id=key.id)
    assert key.primary_version == 2 and key.rotation_count == 1 and key.rotated_at is not None
    out = key_decrypt(principal=admin, key_id=key.id, ciphertext=old, associated_data=b"a")
    assert out.data == b"secret" and out.reencrypted is not None
    assert crypto.key_version_of(out.reencrypted) == 2
    again = key_decrypt(principal=admin, key_id=key.id, ciphertext=out.reencrypted, associated_data=b"a")
    assert again.data == b"secret" and again.reencrypted is None
    new = key_encrypt(principal=admin, key_id=key.id, plaintext=b"n").data
    assert crypto.key_version_of(new) == 2


def test_data_keys_are_sealed_by_the_primary_version(admin, key):
    with_plain = key_generate_data_key(principal=admin, key_id=key.id)
    assert len(with_plain.plaintext) == 32
    nonce = os.urandom(12)
    local = AESGCM(with_plain.plaintext).encrypt(nonce, b"bulk data", None)
    unwrapped = key_decrypt(principal=admin, key_id=key.id, ciphertext=with_plain.ciphertext).data
    assert AESGCM(unwrapped).decrypt(nonce, local, None) == b"bulk data"
    without = key_generate_data_key(principal=admin, key_id=key.id, without_plaintext=True)
    assert without.plaintext is None
    assert len(key_decrypt(principal=admin, key_id=key.id, ciphertext=without.ciphertext).data) == 32
    with pytest.raises(InvalidArgument):
        key_generate_data_key(principal=admin, key_id=key.id, algorithm="des")
    assert not Dek.objects.using("dek").filter(key_id=key.id).exists()  # nothing stored


def test_disable_stops_key_use_and_the_secrets_it_protects(admin, key, make_secret):
    secret = make_secret(b"payload", key=key)
    version = SecretVersion.objects.get(secret=secret)
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=b"x").data
    assert payload_of(version.id) == b"payload"
    key_disable(principal=admin, key_id=key.id)
    for call in (
        lambda: key_encrypt(principal=admin, key_id=key.id, plaintext=b"x"),
        lambda: key_decrypt(principal=admin, key_id=key.id, ciphertext=blob),
        lambda: key_generate_data_key(principal=admin, key_id=key.id),
    ):
        with pytest.raises(PreconditionFailed):
            call()
    with pytest.raises(KeyDisabled):
        payload_of(version.id)
    assert AuditEvent.objects.filter(action="key.encrypt", outcome="failed").exists()
    key_enable(principal=admin, key_id=key.id)
    assert payload_of(version.id) == b"payload"
    assert key_decrypt(principal=admin, key_id=key.id, ciphertext=blob).data == b"x"


# --- deletion -----------------------------------------------------------------------------------
def test_protected_and_default_keys_cannot_be_deleted(admin, key, project):
    with pytest.raises(PreconditionFailed):
        key_delete(principal=admin, key_id=key.id)
    key_unprotect(principal=admin, key_id=project.default_key_id)
    with pytest.raises(PreconditionFailed):
        key_delete(principal=admin, key_id=project.default_key_id)
    assert AuditEvent.objects.filter(action="key.delete", outcome="failed").count() == 2


def test_delete_restore_and_final_deletion(admin, operator, key, make_secret):
    secret = make_secret(b"under the key", key=key)
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=b"x").data
    key_unprotect(principal=admin, key_id=key.id)
    now = timezone.now()
    deleted = key_delete(principal=admin, key_id=key.id, now=now)
    assert deleted.state == "scheduled_for_deletion" and deleted.deletion_requested_at == now
    assert key_delete(principal=admin, key_id=key.id).deletion_requested_at == now  # idempotent
    with pytest.raises(PreconditionFailed):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x")
    assert list(key_list(principal=admin, scheduled_for_deletion=True)) == [deleted]
    assert key not in list(key_list(principal=admin))
    restored = key_restore(principal=admin, key_id=key.id)
    assert restored.state == "enabled" and restored.deletion_requested_at is None
    assert key_decrypt(principal=admin, key_id=key.id, ciphertext=blob).data == b"x"

    key_delete(principal=admin, key_id=key.id, now=now)
    later = now + DELETION_DELAY + timedelta(seconds=1)
    with pytest.raises(ObjectNotFound):
        key_get(principal=admin, key_id=key.id, now=later)
    assert keys_purge_deleted(principal=operator, now=later, dry_run=True)["keys"][0]["secret_versions"] == 1
    result = keys_purge_deleted(principal=operator, now=later)
    (purged,) = result["purged"]
    assert purged["key_id"] == str(key.id) and purged["row_kept"] is True  # a secret still names it
    assert not KekVersion.objects.using("kek").filter(key_id=key.id).exclude(state="destroyed").exists()
    assert not Dek.objects.using("dek").filter(key_id=key.id).exists()
    with pytest.raises((KeyDisabled, KeyMaterialUnavailable)):
        payload_of(SecretVersion.objects.get(secret=secret).id)
    with pytest.raises(PermissionDenied):
        keys_purge_deleted(principal=admin, now=later)


def test_purge_deletes_unreferenced_keys(admin, operator, key):
    key_unprotect(principal=admin, key_id=key.id)
    key_delete(principal=admin, key_id=key.id)
    later = timezone.now() + timedelta(days=8)
    assert keys_purge_deleted(principal=operator, now=later)["purged"][0]["row_kept"] is False
    assert not Key.objects.filter(id=key.id).exists()
    assert keys_purge_deleted(principal=operator, now=later)["purged"] == []


def test_purge_keeps_the_row_of_a_project_default_key(admin, operator, project):
    """key_delete refuses a default key; were one due anyway, purge keeps its row (as PROTECT did)."""
    scheduled = timezone.now() - timedelta(days=8)
    Key.objects.filter(id=project.default_key_id).update(
        protected=False, state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at=scheduled
    )
    (purged,) = keys_purge_deleted(principal=operator)["purged"]
    assert purged["key_id"] == str(project.default_key_id) and purged["row_kept"] is True
    assert Key.objects.filter(id=project.default_key_id).exists()


# --- imported material -------------------------------------------------------------------------
def test_import_key_material_lifecycle(admin, project, make_secret):
    key = key_create(principal=admin, project_id=project.id, origin="external", unprotected=True)
    assert key.state == "pending_key_material"
    assert not KekVersion.objects.using("kek").filter(key_id=key.id).exists()
    with pytest.raises(PreconditionFailed):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x")
    with pytest.raises(PreconditionFailed):
        key_enable(principal=admin, key_id=key.id)
    with pytest.raises(InvalidArgument):
        key_import_key_material(principal=admin, key_id=key.id, key_material=b"\x01" * 31)
    material, salt = os.urandom(32), os.urandom(16)
    key = key_import_key_material(principal=admin, key_id=key.id, key_material=material, salt=salt)
    assert key.state == "enabled" and key.primary_version == 1
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"").derive(material)
    assert kek_material(key.id, 1).reveal() == expected  # never the imported bytes themselves
    with pytest.raises(PreconditionFailed):
        key_import_key_material(principal=admin, key_id=key.id, key_material=material)
    with pytest.raises(PreconditionFailed):
        key_rotate(principal=admin, key_id=key.id)
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=b"byok").data
    secret = make_secret(b"protected by byok", key=key)

    key_delete_key_material(principal=admin, key_id=key.id)
    key.refresh_from_db()
    assert key.state == "pending_key_material"
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).wrapped_material is None
    assert not Dek.objects.using("dek").filter(key_id=key.id).exists()
    event = AuditEvent.objects.get(action="key.delete_key_material")
    assert event.detail["secret_versions"] == 1 and event.detail["kek_versions"] == [1]

    key = key_import_key_material(principal=admin, key_id=key.id, key_material=os.urandom(32))
    assert key.primary_version == 2
    with pytest.raises(KeyMaterialUnavailable):  # crypto-shredded
        key_decrypt(principal=admin, key_id=key.id, ciphertext=blob)
    with pytest.raises(KeyMaterialUnavailable):
        payload_of(SecretVersion.objects.get(secret=secret).id)


def test_protection_blocks_deleting_key_material(admin, project):
    """Deleting an external key's material crypto-shreds everything under it: like deleting the
    key, it is refused while the key is protected, and nothing is shredded."""
    key = key_create(principal=admin, project_id=project.id, origin="external")
    key = key_import_key_material(principal=admin, key_id=key.id, key_material=os.urandom(32))
    key_protect(principal=admin, key_id=key.id)
    with pytest.raises(PreconditionFailed) as refused:
        key_delete_key_material(principal=admin, key_id=key.id)
    assert "protected" in str(refused.value)
    key.refresh_from_db()
    assert key.state == "enabled"
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).wrapped_material is not None
    key_unprotect(principal=admin, key_id=key.id)
    key_delete_key_material(principal=admin, key_id=key.id)
    key.refresh_from_db()
    assert key.state == "pending_key_material"


def test_material_import_is_only_for_external_symmetric_keys(admin, key, project):
    with pytest.raises(PreconditionFailed):
        key_import_key_material(principal=admin, key_id=key.id, key_material=os.urandom(32))
    with pytest.raises(PreconditionFailed):
        key_delete_key_material(principal=admin, key_id=key.id)
    with pytest.raises(InvalidArgument):
        key_create(
            principal=admin,
            project_id=project.id,
            origin="external",
            usage="asymmetric_signing",
            algorithm="ec_p256_sha256",
        )


# --- asymmetric keys, cross-checked with the cryptography library ---------------------------------
def _public(admin, key):
    return serialization.load_pem_public_key(key_get_public_key(principal=admin, key_id=key.id).encode())


@pytest.mark.parametrize("algorithm", SIGNING)
def test_signatures_verify_outside_with_the_public_key(admin, project, algorithm):
    key = key_create(principal=admin, project_id=project.id, usage="asymmetric_signing", algorithm=algorithm)
    message = b"the message to sign"
    digest = hashlib.sha384(message).digest() if algorithm.endswith("sha384") else hashlib.sha256(message).digest()
    signature = key_sign(principal=admin, key_id=key.id, digest=digest).data
    public = _public(admin, key)
    if algorithm.startswith("ec_"):
        chosen = hashes.SHA384() if algorithm.endswith("sha384") else hashes.SHA256()
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(chosen)))
    elif algorithm.startswith("rsa_pss"):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        public.verify(signature, digest, pss, utils.Prehashed(hashes.SHA256()))
    elif algorithm.startswith("rsa_pkcs1"):
        public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    else:
        public.verify(signature, digest)  # pure ML-DSA over the given bytes
    assert key_verify(principal=admin, key_id=key.id, digest=digest, signature=signature)[1] is True
    flipped = signature[:-1] + bytes([signature[-1] ^ 1])
    assert key_verify(principal=admin, key_id=key.id, digest=digest, signature=flipped)[1] is False
    assert key_verify(principal=admin, key_id=key.id, digest=digest, signature=b"junk")[1] is False
    if not algorithm.startswith("ml_dsa"):
        with pytest.raises(InvalidArgument):
            key_sign(principal=admin, key_id=key.id, digest=b"short")
    for refused in (
        lambda: key_encrypt(principal=admin, key_id=key.id, plaintext=b"x"),
        lambda: key_rotate(principal=admin, key_id=key.id),
        lambda: key_generate_data_key(principal=admin, key_id=key.id),
    ):
        with pytest.raises(PreconditionFailed):
            refused()
    row = KekVersion.objects.using("kek").get(key_id=key.id, version=1)
    assert row.algorithm == algorithm and row.public_key is not None
    assert kek_material(key.id, 1).reveal() not in bytes(row.wrapped_material)


@pytest.mark.parametrize("algorithm", RSA_OAEP)
def test_rsa_oaep_ciphertexts_made_outside_decrypt_inside(admin, project, algorithm):
    key = key_create(principal=admin, project_id=project.id, usage="asymmetric_encryption", algorithm=algorithm)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    outside = _public(admin, key).encrypt(b"made outside", oaep)
    assert key_decrypt(principal=admin, key_id=key.id, ciphertext=outside).data == b"made outside"
    inside = key_encrypt(principal=admin, key_id=key.id, plaintext=b"made inside").data
    assert key_decrypt(principal=admin, key_id=key.id, ciphertext=inside).data == b"made inside"
    limit = asymmetric.max_plaintext(algorithm)
    with pytest.raises(InvalidArgument):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x" * (limit + 1))
    with pytest.raises(InvalidArgument):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x", associated_data=b"ad")
    with pytest.raises(InvalidArgument):
        key_decrypt(principal=admin, key_id=key.id, ciphertext=outside[:-1] + b"\x00")
    with pytest.raises(PreconditionFailed):
        key_wrap(principal=admin, key_id=key.id, plaintext=b"x")


@pytest.mark.parametrize("algorithm", ML_KEM)
def test_ml_kem_wrap_and_unwrap(admin, project, algorithm):
    key = key_create(principal=admin, project_id=project.id, usage="asymmetric_encryption", algorithm=algorithm)
    wrapped = key_wrap(principal=admin, key_id=key.id, plaintext=b"k" * 32, associated_data=b"ad").data
    out = key_unwrap(principal=admin, key_id=key.id, ciphertext=wrapped, associated_data=b"ad")
    assert out.data == b"k" * 32
    with pytest.raises(InvalidArgument):
        key_unwrap(principal=admin, key_id=key.id, ciphertext=wrapped, associated_data=b"other")
    with pytest.raises(InvalidArgument):
        key_unwrap(principal=admin, key_id=key.id, ciphertext=wrapped[:100])
    with pytest.raises(InvalidArgument):
        key_wrap(principal=admin, key_id=key.id, plaintext=b"x" * 2049)
    # A client holding only the PEM public key can wrap for the service.
    pem = key_get_public_key(principal=admin, key_id=key.id)
    der = serialization.load_pem_public_key(pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    outside = asymmetric.wrap(algorithm, der, b"outside", context=crypto.aad("key-manager-wrap", b""), key_version=1)
    assert key_unwrap(principal=admin, key_id=key.id, ciphertext=outside).data == b"outside"
    with pytest.raises(PreconditionFailed):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x")


def test_public_key_of_a_symmetric_key_is_refused(admin, key):
    with pytest.raises(PreconditionFailed):
        key_get_public_key(principal=admin, key_id=key.id)
    with pytest.raises(PreconditionFailed):
        key_sign(principal=admin, key_id=key.id, digest=b"\x00" * 32)


def test_algorithm_catalogue():
    names = {a.name for a in key_list_algorithms()}
    assert {"aes_256_gcm", "rsa_oaep_3072_sha256", "ml_dsa_65", "ml_kem_1024", "ec_p384_sha384"} <= names
    assert all(a.usage == "asymmetric_signing" for a in key_list_algorithms(usages=["asymmetric_signing"]))
    recommended = {a.usage for a in key_list_algorithms() if a.recommended}
    assert recommended == {"symmetric_encryption", "asymmetric_encryption", "asymmetric_signing"}
    with pytest.raises(InvalidArgument):
        key_list_algorithms(usages=["bogus"])
    with pytest.raises(asymmetric.UnsupportedAlgorithm):
        asymmetric.algorithm("rsa_oaep_1024_sha256")


def test_unavailable_algorithms_are_refused_clearly(admin, project, monkeypatch):
    monkeypatch.setattr(asymmetric, "_backend_supports", lambda family: family not in ("ml_kem", "ml_dsa"))
    assert not any(a.family in ("ml_kem", "ml_dsa") for a in key_list_algorithms())
    with pytest.raises(InvalidArgument, match="unsupported algorithm"):
        key_create(principal=admin, project_id=project.id, usage="asymmetric_signing", algorithm="ml_dsa_44")


# --- listing -------------------------------------------------------------------------------------
def test_list_filters_orders_and_hides_other_projects(admin, operator, project, other_project, stranger):
    a = key_create(principal=admin, project_id=project.id, name="alpha", tags=["prod", "eu"])
    b = key_create(
        principal=admin, project_id=project.id, name="beta", usage="asymmetric_signing", algorithm="ec_p256_sha256"
    )
    foreign = key_create(principal=operator, project_id=other_project.id, name="alien")
    names = [k.name for k in key_list(principal=admin)]
    assert names == sorted(names) and "alien" not in names and {"alpha", "beta"} <= set(names)
    assert list(key_list(principal=admin, tags=["prod", "eu"])) == [a]
    assert list(key_list(principal=admin, tags=["prod", "us"])) == []
    assert list(key_list(principal=admin, tags=["PROD"])) == []
    assert list(key_list(principal=admin, tags=["pro"])) == []
    assert list(key_list(principal=admin, usage="asymmetric_signing")) == [b]
    assert list(key_list(principal=admin, name="ALP")) == [a]
    assert [k.name for k in key_list(principal=admin, order_by="name_desc")] == sorted(names, reverse=True)
    assert list(key_list(principal=stranger)) == []
    assert foreign in list(key_list(principal=operator, organization_id=other_project.organization_id))
    assert list(key_list(principal=admin, region="nl-ams")) == []
    with pytest.raises(InvalidArgument):
        key_list(principal=admin, order_by="random")
    with pytest.raises(InvalidArgument):
        key_list(principal=admin, project_id="nope")


# --- the authorization matrix ---------------------------------------------------------------------
def _operations(key, signing_key, blob):
    """Every guarded service, as (name, required action, call taking a principal)."""
    k, s = key.id, signing_key.id
    return [
        ("get", "view", lambda p: key_get(principal=p, key_id=k)),
        ("get_public_key", "view", lambda p: key_get_public_key(principal=p, key_id=s)),
        ("encrypt", "use", lambda p: key_encrypt(principal=p, key_id=k, plaintext=b"x")),
        ("decrypt", "use", lambda p: key_decrypt(principal=p, key_id=k, ciphertext=blob)),
        ("generate_data_key", "use", lambda p: key_generate_data_key(principal=p, key_id=k)),
        ("sign", "use", lambda p: key_sign(principal=p, key_id=s, digest=b"\x00" * 32)),
        ("verify", "use", lambda p: key_verify(principal=p, key_id=s, digest=b"\x00" * 32, signature=b"x")),
        ("update", "admin", lambda p: key_update(principal=p, key_id=k, description="d")),
        ("rotate", "admin", lambda p: key_rotate(principal=p, key_id=k)),
        ("protect", "admin", lambda p: key_protect(principal=p, key_id=k)),
        ("unprotect", "admin", lambda p: key_unprotect(principal=p, key_id=k)),
        ("disable", "admin", lambda p: key_disable(principal=p, key_id=k)),
        ("enable", "admin", lambda p: key_enable(principal=p, key_id=k)),
    ]


#: role -> what it may do with keys of its project.
MATRIX = {
    "project_admin": {"view", "use", "admin"},
    "key_admin": {"view", "admin"},
    "key_user": {"view", "use"},
    "auditor": {"view"},
    "secret_admin": set(),
    None: set(),
}
SERVICE_NAMES = {name for name, _, _ in _operations(Key(), Key(), b"")}


def _service_all(module: str) -> list[str]:
    return list(importlib.import_module(f"keys_app.services.keys.{module}").__all__)


def test_matrix_covers_every_guarded_service():
    names = {n for m in ("metadata", "lifecycle", "use", "key_material", "scheduling") for n in _service_all(m)}
    guarded = {n.removeprefix("key_") for n in names if n.startswith("key_")}
    untested = (
        guarded
        - SERVICE_NAMES
        - {
            "create",  # test_create_needs_key_admin_on_the_project
            "list",  # test_list_filters_orders_and_hides_other_projects
            "list_algorithms",  # no object: any authenticated principal
            "delete",
            "restore",
            "import_key_material",
            "delete_key_material",
            "wrap",
            "unwrap",  # below
            "rewrap_deks",  # tests/console/test_pages.py::test_rewrap_from_the_console_runs_the_resumable_job
        }
    )
    assert untested == set()


@pytest.mark.parametrize("role", list(MATRIX))
def test_authorization_matrix(operator, project, other_project, role):
    key = key_create(principal=operator, project_id=project.id, unprotected=True)
    signing = key_create(
        principal=operator, project_id=project.id, usage="asymmetric_signing", algorithm="ec_p256_sha256"
    )
    blob = key_encrypt(principal=operator, key_id=key.id, plaintext=b"x").data
    user = (
        _user_with(operator, "u", role, project) if role else Principal(user=get_user_model().objects.create_user("u"))
    )
    outsider_key = key_create(principal=operator, project_id=other_project.id)
    allowed = MATRIX[role]
    for name, needs, call in _operations(key, signing, blob):
        if needs in allowed:
            call(user)
        elif "view" in allowed:
            with pytest.raises(PermissionDenied):
                call(user)
        else:
            with pytest.raises(ObjectNotFound):
                call(user)
        assert name
    with pytest.raises(ObjectNotFound):  # a role on a project says nothing about another one
        key_encrypt(principal=user, key_id=outsider_key.id, plaintext=b"x")
    denied = AuditEvent.objects.filter(outcome="denied", object_id__in=[str(key.id), str(signing.id)]).count()
    assert denied == sum(1 for _, needs, _ in _operations(key, signing, blob) if needs not in allowed)


def test_role_on_one_key_applies_to_that_key_only(operator, project):
    key = key_create(principal=operator, project_id=project.id)
    other = key_create(principal=operator, project_id=project.id)
    user = _user_with(operator, "kate", "key_user", key)
    key_encrypt(principal=user, key_id=key.id, plaintext=b"x")
    with pytest.raises(ObjectNotFound):
        key_encrypt(principal=user, key_id=other.id, plaintext=b"x")
    assert list(key_list(principal=user)) == [key]


def test_admin_only_lifecycle_operations(operator, project):
    key = key_create(principal=operator, project_id=project.id, unprotected=True)
    external = key_create(principal=operator, project_id=project.id, origin="external")
    kem = key_create(principal=operator, project_id=project.id, usage="asymmetric_encryption", algorithm="ml_kem_768")
    user = _user_with(operator, "u", "key_user", project)
    viewer = _user_with(operator, "v", "auditor", project)
    wrapped = key_wrap(principal=user, key_id=kem.id, plaintext=b"x").data
    assert key_unwrap(principal=user, key_id=kem.id, ciphertext=wrapped).data == b"x"
    for call in (
        lambda p: key_delete(principal=p, key_id=key.id),
        lambda p: key_restore(principal=p, key_id=key.id),
        lambda p: key_import_key_material(principal=p, key_id=external.id, key_material=b"k" * 32),
        lambda p: key_delete_key_material(principal=p, key_id=external.id),
    ):
        with pytest.raises(PermissionDenied):
            call(user)
    for call in (
        lambda p: key_wrap(principal=p, key_id=kem.id, plaintext=b"x"),
        lambda p: key_unwrap(principal=p, key_id=kem.id, ciphertext=wrapped),
    ):
        with pytest.raises(PermissionDenied):
            call(viewer)


# --- audit ------------------------------------------------------------------------------------------
def test_key_uses_are_audited_without_payloads(admin, key):
    plaintext = b"very-secret-plaintext-42"
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=plaintext, associated_data=b"aad-xyz").data
    key_decrypt(principal=admin, key_id=key.id, ciphertext=blob, associated_data=b"aad-xyz")
    data_key = key_generate_data_key(principal=admin, key_id=key.id)
    key_rotate(principal=admin, key_id=key.id)
    key_disable(principal=admin, key_id=key.id)
    key_enable(principal=admin, key_id=key.id)
    actions = list(AuditEvent.objects.filter(object_id=str(key.id)).values_list("action", flat=True))
    for action in (
        "key.create",
        "key.encrypt",
        "key.decrypt",
        "key.generate_data_key",
        "key.rotate",
        "key.disable",
        "key.enable",
    ):
        assert action in actions
    forbidden = [plaintext, blob, data_key.plaintext, data_key.ciphertext, kek_material(key.id, 1).reveal()]
    text = " ".join(str(row) for row in AuditEvent.objects.values())
    for value in forbidden:
        assert value.hex() not in text and base64.b64encode(value).decode() not in text
        assert value.decode(errors="ignore") not in text or len(value.decode(errors="ignore")) < 4
    assert audit_verify()["ok"]


def test_a_failed_audit_write_fails_the_operation(admin, key, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("audit store down")

    for module in (lifecycle, use):  # the services of key_disable and key_encrypt
        monkeypatch.setattr(module, "audit_record", broken)
    with pytest.raises(RuntimeError):
        key_disable(principal=admin, key_id=key.id)
    key.refresh_from_db()
    assert key.state == KeyState.ENABLED
    with pytest.raises(RuntimeError):
        key_encrypt(principal=admin, key_id=key.id, plaintext=b"x")


def test_destroyed_versions_stay_dead_despite_another_process_cache(admin, project):
    """Another worker may still cache a version that delete_key_material destroyed: decrypt asks kek."""
    from keys_app.services.material import key_cache

    key = key_create(principal=admin, project_id=project.id, origin="external", unprotected=True)
    key_import_key_material(principal=admin, key_id=key.id, key_material=os.urandom(32))
    blob = key_encrypt(principal=admin, key_id=key.id, plaintext=b"x").data
    stale = kek_material(key.id, 1)
    key_delete_key_material(principal=admin, key_id=key.id)
    key_import_key_material(principal=admin, key_id=key.id, key_material=os.urandom(32))
    key_cache().put(("kek", key.id, 1), str(key.id), stale)  # what a second worker still holds
    with pytest.raises(KeyMaterialUnavailable):
        key_decrypt(principal=admin, key_id=key.id, ciphertext=blob)


def test_asymmetric_private_keys_follow_a_root_key_rotation(admin, project):
    from keys_app.services import material
    from keys_app.services.rotation.rek import rek_rotate
    from secrets_app.services.verification import hierarchy_verify

    key = key_create(principal=admin, project_id=project.id, usage="asymmetric_signing", algorithm="ml_dsa_44")
    pem = key_get_public_key(principal=admin, key_id=key.id)
    assert rek_rotate()["kek_versions_rewrapped"] >= 2  # the project's default key and this one
    material.key_cache().clear()
    assert KekVersion.objects.using("kek").get(key_id=key.id).rek_version == 2
    signature = key_sign(principal=admin, key_id=key.id, digest=b"message").data
    assert key_get_public_key(principal=admin, key_id=key.id) == pem
    assert key_verify(principal=admin, key_id=key.id, digest=b"message", signature=signature)[1]
    assert hierarchy_verify()["ok"]
