"""The pkcs11 root key provider on a fresh SoftHSM2 token."""

from __future__ import annotations

import json
import os
from io import StringIO

import pkcs11
import pytest
from django.core.management import call_command
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from keys_app import crypto
from keys_app.errors import RootKeyError
from keys_app.models import KekVersion, RootKeyVersion
from keys_app.providers import RootKeyUnavailable, get_provider, reset_providers
from keys_app.providers.file import FileRootKeyProvider
from keys_app.providers.pkcs11 import Pkcs11RootKeyProvider
from keys_app.services import material, root
from keys_app.services.rotation.rek import rek_rotate
from secrets_app.models import SecretVersion
from secrets_app.services.verification import hierarchy_verify
from secrets_app.storage import secret_version_payload

ALL = ["default", "kek", "dek"]


def _session(hsm, label=None):
    """A session of the test itself on the token (login is per application: reuse the provider's)."""
    get_provider("pkcs11").has_version(0)  # make sure this process is logged in
    token = pkcs11.lib(hsm.module).get_token(token_label=label or hsm.token_label)
    return token.open(rw=True)


def payloads(secret):
    material.key_cache().clear()
    root.forget_verified_root_keys()
    versions = SecretVersion.objects.filter(secret=secret).select_related("secret__key").order_by("revision")
    return [secret_version_payload(v) for v in versions]


# --- the key object ------------------------------------------------------------------------
def test_rek_object_is_non_extractable_and_sensitive(softhsm, pkcs11_options):
    provider = get_provider("pkcs11")
    provider.create_version(1)
    with _session(softhsm) as session:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=f"{pkcs11_options['key_label']}-v1")
        assert key.key_type == KeyType.AES and key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.TOKEN] and key[Attribute.PRIVATE]
        assert key[Attribute.SENSITIVE] and key[Attribute.ALWAYS_SENSITIVE]
        assert not key[Attribute.EXTRACTABLE] and key[Attribute.NEVER_EXTRACTABLE]
        assert not key[Attribute.MODIFIABLE]
        with pytest.raises(pkcs11.AttributeSensitive):
            key[Attribute.VALUE]
        # Nor can it be wrapped out under another key, or made extractable.
        wrapping = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
        with pytest.raises((pkcs11.KeyUnextractable, pkcs11.KeyNotWrappable)):
            wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        with pytest.raises(pkcs11.PKCS11Error):  # AttributeReadOnly (CKA_MODIFIABLE false)
            key[Attribute.EXTRACTABLE] = True
        assert not key[Attribute.EXTRACTABLE]


def test_create_version_is_idempotent_and_check_value_is_computed_in_the_hsm(softhsm, pkcs11_options):
    provider = get_provider("pkcs11")
    first = provider.create_version(1)
    assert provider.create_version(1) == first == provider.check_value(1)
    assert len(first) == 16
    other = provider.create_version(2)
    assert other != first
    with _session(softhsm) as session:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=f"{pkcs11_options['key_label']}-v1")
        # Not the standard 3-byte KCV (the first bytes of AES_K(0), i.e. GCM's hash key).
        assert not first.startswith(bytes(key[Attribute.CHECK_VALUE]))
        assert bytes(key.sign(b"hkms pkcs11 key check value v1", mechanism=Mechanism.AES_CMAC)) == first


def test_wrap_unwrap_round_trip_and_tamper(pkcs11_options):
    provider = get_provider("pkcs11")
    provider.create_version(1)
    provider.create_version(2)
    context = crypto.aad("kek", "key-id", 1, 1)
    material_ = os.urandom(32)
    blob = provider.wrap(1, material_, context=context)
    assert provider.unwrap(1, blob, context=context) == material_
    assert provider.wrap(1, material_, context=context) != blob  # fresh nonce each time
    assert crypto.key_version_of(blob) == 1
    with pytest.raises(crypto.InvalidCiphertext):
        provider.unwrap(1, blob, context=crypto.aad("kek", "key-id", 2, 1))  # moved to another row
    with pytest.raises(crypto.InvalidCiphertext):
        provider.unwrap(2, blob, context=context)  # another REK version
    for index in (0, 3, 10, 20, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(crypto.InvalidCiphertext):
            provider.unwrap(1, bytes(tampered), context=context)
    with pytest.raises(crypto.InvalidCiphertext):
        provider.unwrap(1, blob[:20], context=context)


def test_blob_format_and_associated_data_are_those_of_the_crypto_module(softhsm, pkcs11_options):
    """An HSM-made blob opens with crypto.open_ under the same key and context, and vice versa."""
    known = os.urandom(32)
    with _session(softhsm) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: known,
                Attribute.LABEL: f"{pkcs11_options['key_label']}-v7",
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.SIGN: True,
            }
        )
    provider = get_provider("pkcs11")
    context = crypto.aad("kek", "k", 3, 7)
    assert crypto.open_(known, provider.wrap(7, b"kek material", context=context), context=context) == b"kek material"
    blob = crypto.seal(known, b"other material", context=context, key_version=7)
    assert provider.unwrap(7, blob, context=context) == b"other material"
    provider.destroy_version(7)


def test_destroy_version_deletes_the_object(softhsm, pkcs11_options):
    provider = get_provider("pkcs11")
    provider.create_version(1)
    assert provider.has_version(1)
    provider.destroy_version(1)
    provider.destroy_version(1)  # idempotent
    assert not provider.has_version(1)
    with _session(softhsm) as session, pytest.raises(pkcs11.NoSuchKey):
        session.get_key(label=f"{pkcs11_options['key_label']}-v1")
    with pytest.raises(RootKeyUnavailable, match="not in PKCS#11 token"):
        provider.check_value(1)


# --- errors --------------------------------------------------------------------------------
def test_wrong_pin_is_a_clear_error(softhsm):
    provider = Pkcs11RootKeyProvider(softhsm.options(token_label=softhsm.other_token_label, pin="0000-wrong"))
    with pytest.raises(RootKeyUnavailable) as info:
        provider.create_version(1)
    assert str(info.value) == f"the PKCS#11 login to token {softhsm.other_token_label!r} failed: the PIN is wrong"
    assert "0000-wrong" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"module": "/nonexistent/libpkcs11.so"}, "the PKCS#11 module /nonexistent/libpkcs11.so does not exist"),
        ({"module": ""}, "no PKCS#11 module is configured: set HKMS_PKCS11_MODULE to the library path"),
        ({"token_label": "no-such-token"}, "no PKCS#11 token labelled 'no-such-token' is present in"),
        ({"pin": "", "pin_file": ""}, "no PIN is configured for the PKCS#11 token"),
        ({"pin": "", "pin_file": "/nonexistent/pin"}, "the PKCS#11 PIN file /nonexistent/pin cannot be read"),
    ],
)
def test_configuration_faults_are_clear_errors(softhsm, overrides, message):
    provider = Pkcs11RootKeyProvider(softhsm.options(**overrides))
    with pytest.raises(RootKeyUnavailable) as info:
        provider.check_value(1)
    assert str(info.value).startswith(message)


def test_module_that_is_not_a_pkcs11_library(softhsm, tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not a shared object")
    provider = Pkcs11RootKeyProvider(softhsm.options(module=str(bogus)))
    with pytest.raises(RootKeyUnavailable, match=r"cannot be loaded"):
        provider.has_version(1)


def test_pin_from_a_file(softhsm, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    provider = Pkcs11RootKeyProvider(softhsm.options(pin="", pin_file=str(pin_file)))
    assert len(provider.create_version(1)) == 16


@pytest.mark.django_db(databases=ALL)
def test_hierarchy_on_pkcs11_refuses_a_key_that_does_not_match_its_check_value(settings, pkcs11_options, make_secret):
    settings.HKMS_ROOT_KEY_PROVIDER = "pkcs11"
    reset_providers()
    rek_rotate(to_provider="pkcs11")
    provider = get_provider("pkcs11")
    provider.destroy_version(2)
    provider.create_version(2)  # a different key under the same label
    material.key_cache().clear()
    root.forget_verified_root_keys()
    with pytest.raises(RootKeyError, match="does not match the check value"):
        root.rek_check(RootKeyVersion.objects.using("kek").get(version=2))


# --- rotation between providers ------------------------------------------------------------
@pytest.mark.django_db(databases=ALL)
def test_rotation_file_to_pkcs11_to_file_keeps_every_secret_readable(settings, pkcs11_options, make_secret):
    secrets = [make_secret(b"alpha", b"beta"), make_secret(b"\x00\xff binary"), make_secret(b"gamma")]
    before = [payloads(s) for s in secrets]

    result = rek_rotate(to_provider="pkcs11", batch_size=2)
    assert result["provider"] == "pkcs11" and result["rek_version"] == 2 and result["retired_rek_versions"] == [1]
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {2}
    assert not FileRootKeyProvider(settings.HKMS_ROOT_KEY_OPTIONS["file"]).has_version(1)  # destroyed
    assert [payloads(s) for s in secrets] == before

    result = rek_rotate(to_provider="file")
    assert result["provider"] == "file" and result["rek_version"] == 3
    assert not get_provider("pkcs11").has_version(2)  # the HSM object is destroyed
    assert [payloads(s) for s in secrets] == before
    assert hierarchy_verify()["ok"]


@pytest.mark.django_db(databases=ALL)
def test_rotate_root_key_command_moves_to_pkcs11(pkcs11_options, make_secret):
    secret = make_secret(b"payload")
    out = StringIO()
    call_command("rotate_root_key", "--to-provider", "pkcs11", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["provider"] == "pkcs11"
    assert RootKeyVersion.objects.using("kek").get(version=2).provider == "pkcs11"
    assert payloads(secret) == [b"payload"]


@pytest.mark.django_db(databases=ALL)
def test_hsm_error_mid_rotation_leaves_everything_readable_and_resumes(
    monkeypatch, pkcs11_options, project, make_secret
):
    from keys_app.services.material import key_create_with_material

    keys = [key_create_with_material(project=project, name=f"key-{i}") for i in range(6)]
    secrets = [make_secret(f"payload-{i}".encode(), key=key) for i, key in enumerate(keys)]
    before = [payloads(s) for s in secrets]
    calls = {"n": 0}
    real_wrap = Pkcs11RootKeyProvider.wrap

    def failing_wrap(self, version, plaintext, *, context):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RootKeyUnavailable("the HSM failed during wrap on token 'x' (DeviceError)")
        return real_wrap(self, version, plaintext, context=context)

    monkeypatch.setattr(Pkcs11RootKeyProvider, "wrap", failing_wrap)
    with pytest.raises(RootKeyError, match="DeviceError"):
        rek_rotate(to_provider="pkcs11", batch_size=2)
    # Half-way: some KEK versions under the new REK, the rest under the old; all readable.
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {1, 2}
    assert [payloads(s) for s in secrets] == before
    monkeypatch.setattr(Pkcs11RootKeyProvider, "wrap", real_wrap)
    result = rek_rotate(to_provider="pkcs11", batch_size=2)
    assert result["resumed"] and result["rek_version"] == 2
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {2}
    assert [payloads(s) for s in secrets] == before


@pytest.mark.django_db(databases=ALL)
def test_hierarchy_status_shows_the_token(settings, pkcs11_options, make_secret):
    rek_rotate(to_provider="pkcs11")
    settings.HKMS_ROOT_KEY_PROVIDER = "pkcs11"
    out = StringIO()
    call_command("hierarchy_status", stdout=out)
    text = out.getvalue()
    assert "root key: provider pkcs11, current version 2, sealed: False" in text
    assert f"token {pkcs11_options['token_label']!r}" in text and "reachable: True" in text
