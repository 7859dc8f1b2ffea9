"""Reads never fail while a rotation runs, at any level.

Three layers:

* deterministic interleavings in this process: a reader that loaded a row
  just before a rotation moved it on still gets its payload;
* threads of one process (a rotation thread, reader threads sharing its key
  cache) on a real installation (``tests.keys_app.instance``);
* separate processes: the rotation commands run while a reader process reads.

The last two run on three SQLite files, or on three fresh PostgreSQL
databases when ``HKMS_TEST_POSTGRES=1``.
"""

from __future__ import annotations

import json
import time

import pytest

from keys_app.models import KekVersion
from keys_app.services import material, root
from keys_app.services.projects import project_default_key
from keys_app.services.rotation.kek import deks_rewrap, kek_rotate
from keys_app.services.rotation.rek import rek_rotate
from secrets_app.models import SecretVersion
from secrets_app.services.dek_rotation import deks_rotate
from secrets_app.services.revocation import key_revoke
from secrets_app.storage import secret_version_payload
from tests.keys_app.instance import instance

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def forget_everything() -> None:
    material.key_cache().clear()
    root.forget_verified_root_keys()


def load(version_id) -> SecretVersion:
    return SecretVersion.objects.select_related("secret__key").get(id=version_id)


# --- deterministic interleavings ---------------------------------------------------------------
def test_kek_row_read_just_before_a_root_key_rotation(make_secret, monkeypatch):
    """The reader fetched a KEK row under REK v1; the rotation re-wraps it and destroys REK v1."""
    secret = make_secret(b"interleaved-rek")
    version = load(secret.versions.get().id)
    forget_everything()
    real_unwrap = material.rek_unwrap
    fired = []

    def rotate_then_unwrap(*args, **kwargs):
        if not fired:
            fired.append(rek_rotate())
        return real_unwrap(*args, **kwargs)

    monkeypatch.setattr(material, "rek_unwrap", rotate_then_unwrap)
    assert secret_version_payload(version) == b"interleaved-rek"
    assert fired and fired[0]["retired_rek_versions"] == [1]
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {2}


def test_version_row_read_just_before_a_dek_rotation(make_secret):
    secret = make_secret(b"interleaved-dek-1", b"interleaved-dek-2")
    stale = [load(v.id) for v in secret.versions.order_by("revision")]
    forget_everything()
    assert deks_rotate()["versions_rotated"] == 2
    # The stale rows name DEKs that no longer exist; the reads follow the rotation.
    assert [secret_version_payload(v) for v in stale] == [b"interleaved-dek-1", b"interleaved-dek-2"]


def test_dek_row_read_just_before_a_rewrap_and_revocation(make_secret, project, monkeypatch):
    """The reader fetched a DEK row wrapped by KEK v1; revocation destroys v1 before it unwraps."""
    secret = make_secret(b"interleaved-revoke")
    version = load(secret.versions.get().id)
    forget_everything()
    real_unwrap = material.dek_unwrap
    fired = []

    def revoke_then_unwrap(row):
        if not fired:
            fired.append(key_revoke(key=project_default_key(project), reason="race"))
            forget_everything()
        return real_unwrap(row)

    monkeypatch.setattr(material, "dek_unwrap", revoke_then_unwrap)
    assert secret_version_payload(version) == b"interleaved-revoke"
    assert fired[0]["destroyed_kek_versions"] == [1]


def test_reads_between_rewrap_batches(make_secret, project):
    secrets = [make_secret(f"batch-{i}".encode()) for i in range(6)]
    kek_rotate(key=project_default_key(project))
    seen = []

    def read_all(done, total):
        forget_everything()
        seen.append([secret_version_payload(load(s.versions.get().id)) for s in secrets])

    assert deks_rewrap(batch_size=2, progress=read_all)["deks_rewrapped"] == 6
    assert len(seen) == 3
    assert all(payloads == [f"batch-{i}".encode() for i in range(6)] for payloads in seen)


# --- real installations ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """One installation for the module: 3 projects, 13 keys and 300 secret versions."""
    root_dir = tmp_path_factory.mktemp("concurrent")
    with instance(root_dir / "data") as inst:
        expected = root_dir / "expected.json"
        result = inst.script("seed", str(expected), "3", "100", "3", "10", "concurrent", timeout=120)
        assert result["versions"] == 300
        yield inst, expected


@pytest.mark.parametrize("cache_size", ["0", "10000"], ids=["no-key-cache", "key-cache"])
def test_reader_threads_during_rotation_threads(installation, cache_size):
    """One process: DEK rotation, KEK rotation + re-wrap and REK rotations while 3 threads read.

    Without the key cache every read unwraps its KEK from the root key and its
    DEK from the dek database, so it races each step of every rotation.
    """
    inst, expected = installation
    result = inst.script(
        "rotate-while-reading", str(expected), "1", timeout=240, env={"HKMS_KEY_CACHE_SIZE": cache_size}
    )
    assert result["error"] is None, result["error"]
    assert result["failures"] == [] and result["failure_count"] == 0
    assert result["rotated"] == 300 and result["rewrapped"] == 300 and result["rek"] == 3
    assert result["reads"] >= 100
    assert inst.script("check", str(expected))["ok"]


def test_reader_process_during_rotation_commands(installation, tmp_path):
    inst, expected = installation
    stop = tmp_path / "stop"
    reader = inst.popen_script("read-loop", str(expected), str(stop), "2", env={"HKMS_KEY_CACHE_SIZE": "0"})
    try:
        assert reader.stdout.readline().strip() == "reading"
        time.sleep(0.3)
        inst.manage("rotate_deks", "--all", "--batch-size", "10")
        inst.script("rotate-keks")
        inst.manage("rewrap_deks", "--batch-size", "10")
        inst.manage("rotate_root_key", "--batch-size", "1")
        inst.manage("rotate_deks", "--all", "--batch-size", "25")
        time.sleep(0.3)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == [] and result["failure_count"] == 0
    assert result["reads"] >= 100
    verify = json.loads(inst.manage("verify_hierarchy", "--json").stdout)
    assert verify["ok"] and verify["checked"]["secret_versions"] == 300
