"""Bad input and faults: each gives a clear error naming the object and revealing nothing.

Wrong or missing root key, tampered or moved ciphertexts and wrapped keys,
disabled keys, destroyed versions and missing DEK rows.  Every error is
checked for the object it names and for the absence of payload and key bytes
in its ``str``, ``repr`` and formatted traceback.  The system checks of
``hkms_site.checks`` are at the end.
"""

from __future__ import annotations

import base64
import json
import os
import traceback
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks

from hkms_site import checks
from keys_app import crypto
from keys_app.errors import (
    HierarchyError,
    IntegrityCheckFailed,
    KeyDisabled,
    KeyMaterialUnavailable,
    NotInitialised,
    RootKeyError,
)
from keys_app.models import Dek, KekVersion, KeyState, RootKeyVersion
from keys_app.providers import reset_providers
from keys_app.services import material, root
from keys_app.services.material import dek_unwrap, kek_material, key_set_state
from keys_app.services.projects import project_create_with_default_key as project_create
from keys_app.services.projects import project_default_key
from keys_app.services.rotation.rek import rek_rotate
from secrets_app.models import SecretVersion
from secrets_app.services.revocation import key_revoke
from secrets_app.storage import (
    secret_version_create,
    secret_version_destroy,
    secret_version_payload,
)

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

PAYLOADS = (b"correct-horse-battery-staple-0xFA17", b"hunter2-but-much-longer-0xFA18")


# --- helpers -------------------------------------------------------------------------------
def keyring_path() -> Path:
    return Path(django_settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"])


def forget_everything() -> None:
    """What a fresh process knows: no cached keys, no verified root key versions."""
    material.key_cache().clear()
    root.forget_verified_root_keys()
    reset_providers()


def versions_of(secret) -> list[SecretVersion]:
    return list(SecretVersion.objects.filter(secret=secret).order_by("revision"))


def read(version: SecretVersion) -> bytes:
    fresh = SecretVersion.objects.select_related("secret__key").get(id=version.id)
    return secret_version_payload(fresh)


def flip_byte(blob: bytes, position: int = -1) -> bytes:
    out = bytearray(blob)
    out[position] ^= 0x01
    return bytes(out)


def sensitive_material() -> list[bytes]:
    """Every key byte string of the hierarchy right now, plus the test payloads."""
    document = json.loads(keyring_path().read_text())
    reks = [base64.b64decode(value) for value in document["versions"].values()]
    keks = [
        kek_material(row.key_id, row.version).reveal()
        for row in KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED)
    ]
    deks = [dek_unwrap(row).reveal() for row in Dek.objects.using("dek").all()]
    assert reks and keks and deks
    return [*reks, *keks, *deks, *PAYLOADS]


def assert_reveals_nothing(exc: BaseException, sensitive: list[bytes]) -> None:
    text = "\n".join([str(exc), repr(exc), *traceback.format_exception(exc), *map(repr, exc.args)])
    for value in sensitive:
        for form in (
            value.hex(),
            value.hex().upper(),
            base64.b64encode(value).decode(),
            repr(value),
            value.decode("latin-1"),
        ):
            assert form not in text, f"{type(exc).__name__} message reveals secret bytes"
    assert all(isinstance(arg, str) for arg in exc.args)


@pytest.fixture
def secret(make_secret):
    return make_secret(*PAYLOADS, name="db-password")


@pytest.fixture
def sensitive(secret):
    return sensitive_material()


# --- root key --------------------------------------------------------------------------------
def test_wrong_root_key_is_refused_before_use(secret, sensitive):
    path = keyring_path()
    path.write_text(json.dumps({"format": 1, "versions": {"1": base64.b64encode(os.urandom(32)).decode()}}))
    forget_everything()
    version = versions_of(secret)[0]
    with pytest.raises(RootKeyError) as info:
        read(version)
    message = str(info.value)
    assert "root key version 1" in message and "check value" in message
    assert_reveals_nothing(info.value, [*sensitive, base64.b64decode(json.loads(path.read_text())["versions"]["1"])])
    with pytest.raises(RootKeyError, match="check value"):
        root.hierarchy_init()
    with pytest.raises(RootKeyError, match="check value"):
        rek_rotate()
    # Refused before anything changed: no new root key version, no KEK re-wrapped.
    assert list(RootKeyVersion.objects.using("kek").values_list("version", flat=True)) == [1]
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {1}


def test_missing_root_key_file_names_the_file(secret, sensitive):
    path = keyring_path()
    saved = path.read_bytes()
    path.unlink()
    forget_everything()
    version = versions_of(secret)[0]
    with pytest.raises(RootKeyError) as info:
        read(version)
    assert str(path) in str(info.value) and "missing" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    with pytest.raises(RootKeyError, match="missing"):
        root.hierarchy_init()
    path.write_bytes(saved)
    path.chmod(0o600)
    forget_everything()
    assert read(version) == PAYLOADS[0]


def test_root_key_file_readable_by_others_is_refused(secret, sensitive):
    keyring_path().chmod(0o644)
    forget_everything()
    with pytest.raises(RootKeyError, match="readable by others") as info:
        read(versions_of(secret)[0])
    assert_reveals_nothing(info.value, sensitive)


def test_root_key_version_missing_from_the_keyring(secret, sensitive):
    path = keyring_path()
    document = json.loads(path.read_text())
    document["versions"] = {"7": document["versions"]["1"]}
    path.write_text(json.dumps(document))
    forget_everything()
    with pytest.raises(RootKeyError, match="root key version 1 is not in the root key file") as info:
        read(versions_of(secret)[0])
    assert_reveals_nothing(info.value, sensitive)


def test_uninitialised_hierarchy_says_what_to_run(db):
    with pytest.raises(NotInitialised, match="init_hierarchy"):
        project_create(name="too-early")


# --- tampering -------------------------------------------------------------------------------
def test_tampered_secret_ciphertext(secret, sensitive):
    version = versions_of(secret)[1]
    SecretVersion.objects.filter(id=version.id).update(ciphertext=flip_byte(bytes(version.ciphertext), 20))
    with pytest.raises(IntegrityCheckFailed) as info:
        read(version)
    assert f"secret {secret.id} revision 2" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    assert read(versions_of(secret)[0]) == PAYLOADS[0]  # the other revision is untouched


def test_truncated_secret_ciphertext(secret, sensitive):
    version = versions_of(secret)[0]
    SecretVersion.objects.filter(id=version.id).update(ciphertext=bytes(version.ciphertext)[:10])
    with pytest.raises(IntegrityCheckFailed, match=str(secret.id)) as info:
        read(version)
    assert_reveals_nothing(info.value, sensitive)


def test_tampered_wrapped_kek(secret, project, sensitive):
    key_id = project.default_key_id
    row = KekVersion.objects.using("kek").get(key_id=key_id, version=1)
    KekVersion.objects.using("kek").filter(id=row.id).update(wrapped_material=flip_byte(bytes(row.wrapped_material)))
    forget_everything()
    with pytest.raises(IntegrityCheckFailed) as info:
        read(versions_of(secret)[0])
    assert f"KEK version 1 of key {key_id}" in str(info.value)
    assert "root key version 1" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


def test_tampered_wrapped_dek(secret, sensitive):
    version = versions_of(secret)[0]
    dek = Dek.objects.using("dek").get(id=version.dek_id)
    Dek.objects.using("dek").filter(id=dek.id).update(wrapped=flip_byte(bytes(dek.wrapped), 30))
    forget_everything()
    with pytest.raises(IntegrityCheckFailed) as info:
        read(version)
    assert f"DEK {dek.id}" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


# --- moved ciphertexts and keys -------------------------------------------------------------
def test_ciphertext_copied_to_another_secret_fails_naming_that_secret(make_secret, secret, sensitive):
    other = make_secret(b"other-secret-payload", name="api-token")
    source, target = versions_of(secret)[0], versions_of(other)[0]
    SecretVersion.objects.filter(id=target.id).update(ciphertext=source.ciphertext)
    with pytest.raises(IntegrityCheckFailed) as info:
        read(target)
    assert f"secret {other.id} revision 1" in str(info.value)
    assert_reveals_nothing(info.value, [*sensitive, b"other-secret-payload"])


def test_ciphertext_copied_between_revisions_fails(secret, sensitive):
    first, second = versions_of(secret)
    SecretVersion.objects.filter(id=second.id).update(ciphertext=first.ciphertext)
    with pytest.raises(IntegrityCheckFailed) as info:
        read(second)
    assert f"secret {secret.id} revision 2" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


def test_ciphertext_moved_with_its_dek_reference_still_fails(secret, sensitive):
    """Moving both the ciphertext and the DEK id: the secret id and revision are bound too."""
    first, second = versions_of(secret)
    SecretVersion.objects.filter(id=second.id).update(ciphertext=first.ciphertext, dek_id=first.dek_id)
    with pytest.raises(IntegrityCheckFailed) as info:
        read(second)
    assert f"secret {secret.id} revision 2" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


def test_wrapped_dek_copied_to_another_row_fails(secret, sensitive):
    first, second = versions_of(secret)
    source = Dek.objects.using("dek").get(id=first.dek_id)
    Dek.objects.using("dek").filter(id=second.dek_id).update(wrapped=source.wrapped)
    forget_everything()
    with pytest.raises(IntegrityCheckFailed) as info:
        read(second)
    assert f"DEK {second.dek_id}" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    assert read(first) == PAYLOADS[0]


def test_wrapped_kek_copied_to_another_key_fails(secret, project, other_project, sensitive):
    mine = KekVersion.objects.using("kek").get(key_id=project.default_key_id, version=1)
    theirs = KekVersion.objects.using("kek").get(key_id=other_project.default_key_id, version=1)
    KekVersion.objects.using("kek").filter(id=mine.id).update(wrapped_material=theirs.wrapped_material)
    forget_everything()
    with pytest.raises(IntegrityCheckFailed) as info:
        read(versions_of(secret)[0])
    assert str(project.default_key_id) in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


def test_dek_of_another_key_is_refused(secret, other_project, sensitive):
    version = versions_of(secret)[0]
    Dek.objects.using("dek").filter(id=version.dek_id).update(key_id=other_project.default_key_id)
    forget_everything()
    with pytest.raises(IntegrityCheckFailed) as info:
        read(version)
    assert f"DEK {version.dek_id}" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


# --- disabled, destroyed, missing ------------------------------------------------------------
def test_disabled_key_refuses_reads_and_writes_until_enabled(secret, project, sensitive):
    key = project_default_key(project)
    version = versions_of(secret)[0]
    assert read(version) == PAYLOADS[0]  # the DEK is now cached in this process
    key_set_state(key, KeyState.DISABLED)
    with pytest.raises(KeyDisabled) as info:
        read(version)
    assert str(key.id) in str(info.value) and "disabled" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    with pytest.raises(KeyDisabled):
        secret_version_create(
            secret=SecretVersion.objects.select_related("secret__key").get(id=version.id).secret, data=b"new"
        )
    assert SecretVersion.objects.filter(secret=secret).count() == 2
    key_set_state(key, KeyState.ENABLED)
    assert [read(v) for v in versions_of(secret)] == list(PAYLOADS)


def test_destroyed_version_is_gone_for_good(secret, sensitive):
    first, second = versions_of(secret)
    secret_version_destroy(first)
    assert not Dek.objects.using("dek").filter(id=first.dek_id).exists()
    with pytest.raises(KeyMaterialUnavailable) as info:
        read(first)
    assert f"secret {secret.id} revision 1" in str(info.value) and "destroyed" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    assert read(second) == PAYLOADS[1]


def test_missing_dek_row_names_the_dek(secret, sensitive):
    version = versions_of(secret)[0]
    Dek.objects.using("dek").filter(id=version.dek_id).delete()
    forget_everything()
    with pytest.raises(KeyMaterialUnavailable) as info:
        read(version)
    assert f"DEK {version.dek_id}" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)


def test_destroyed_kek_version_is_unavailable(secret, project, sensitive):
    key = project_default_key(project)
    key_revoke(key=key, reason="test")
    forget_everything()
    with pytest.raises(KeyMaterialUnavailable) as info:
        kek_material(key.id, 1)
    assert f"version 1 of key {key.id}" in str(info.value)
    assert_reveals_nothing(info.value, sensitive)
    assert [read(v) for v in versions_of(secret)] == list(PAYLOADS)


def test_every_hierarchy_error_has_a_stable_code():
    for cls in (RootKeyError, KeyMaterialUnavailable, IntegrityCheckFailed, KeyDisabled, NotInitialised):
        assert issubclass(cls, HierarchyError)
        assert cls.code and cls.code != HierarchyError.code
    assert str(crypto.InvalidCiphertext()) == "ciphertext could not be authenticated"


# --- system checks -----------------------------------------------------------------------------
class _Overlay:
    """Settings with a few attributes replaced, for calling a check function directly."""

    def __init__(self, **overrides):
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(django_settings, name)


def hkms_ids(messages) -> set[str]:
    return {m.id for m in messages if m.id and m.id.startswith("hkms.")}


def test_checks_pass_on_the_test_configuration(hierarchy):
    assert hkms_ids(run_checks(tags=["hkms"])) == set()


def test_check_e001_unknown_root_key_provider(settings):
    settings.HKMS_ROOT_KEY_PROVIDER = "vault"
    messages = [m for m in run_checks(tags=["hkms"]) if m.id == "hkms.E001"]
    assert len(messages) == 1
    assert "'vault'" in messages[0].msg and "file" in messages[0].hint


def test_check_e002_two_aliases_on_one_database(monkeypatch):
    databases = {alias: dict(config) for alias, config in django_settings.DATABASES.items()}
    databases["dek"] = dict(databases["kek"])
    monkeypatch.setattr(checks, "settings", _Overlay(DATABASES=databases))
    messages = [m for m in checks.check_hierarchy_settings() if m.id == "hkms.E002"]
    assert len(messages) == 1
    assert "'kek'" in messages[0].msg and "'dek'" in messages[0].msg


def test_check_e003_root_key_file_mode(hierarchy):
    path = keyring_path()
    path.chmod(0o640)
    messages = [m for m in run_checks(tags=["hkms"]) if m.id == "hkms.E003"]
    assert len(messages) == 1 and str(path) in messages[0].msg
    path.chmod(0o600)
    assert "hkms.E003" not in hkms_ids(run_checks(tags=["hkms"]))


def test_check_w001_file_provider_in_production(settings):
    settings.HKMS_PRODUCTION = True
    assert "hkms.W001" in hkms_ids(run_checks(tags=["hkms"]))


def test_keyring_write_removes_leftovers_of_killed_writers(tmp_path):
    """A writer killed between its temporary file and the rename leaves key material behind;
    the next write deletes it (dead pid), but never a live writer's file."""
    import subprocess
    import sys

    from keys_app.providers.file import TEMP_PREFIX, FileRootKeyProvider

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_leftover = tmp_path / f"{TEMP_PREFIX}{int(dead.stdout)}.abcd"
    dead_leftover.write_text('{"format": 1, "versions": {"1": "retired key material"}}')
    old_style = tmp_path / f"{TEMP_PREFIX}x9y8z7"
    old_style.write_text("{}")
    live = tmp_path / f"{TEMP_PREFIX}{os.getppid()}.efgh"
    live.write_text("{}")

    provider = FileRootKeyProvider({"path": tmp_path / "root_keyring.json"})
    check_value = provider.create_version(1)

    assert not dead_leftover.exists() and not old_style.exists()
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "root_keyring.json"])
    assert provider.create_version(1) == check_value
