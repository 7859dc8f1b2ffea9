"""The restore drill: back up, rotate every level and write more, restore the old backup elsewhere, verify.

The backup runs in this process on the test databases (committed data: a
``transaction=True`` test); the restore runs in a subprocess whose settings
name a fresh data dir (SQLite) or three fresh PostgreSQL databases, with only
the root key file copied beside the archive, as an operator would.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from hkms_site.backup import envelope
from hkms_site.backup.models import BackupRecord
from keys_app.models import KekVersion, RootKeyVersion
from keys_app.services import material
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_create, secret_version_create, secret_version_payload
from tests.live import _pg_admin, postgres_enabled

ROOT = Path(__file__).resolve().parents[2]
ALL = ["default", "kek", "dek"]

READ_BACK = """
import base64, json
from django.core.management import call_command
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_version_payload
call_command("restore", ARCHIVE, "--private-key", KEY, "--json")
call_command("verify_hierarchy")
call_command("verify_audit_log")
versions = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret__key")
print("PAYLOADS " + json.dumps({str(v.id): base64.b64encode(secret_version_payload(v)).decode() for v in versions}))
"""


def payloads() -> dict[str, str]:
    material.key_cache().clear()
    versions = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret__key")
    return {str(v.id): base64.b64encode(secret_version_payload(v)).decode() for v in versions}


def keyring_versions() -> set[int]:
    document = json.loads(Path(settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"]).read_text())
    return {int(v) for v in document["versions"]}


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def fresh_installation(tmp_path):
    """Environment of an empty installation: a new data dir, and new PostgreSQL databases when enabled."""
    data_dir = tmp_path / "restored"
    data_dir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "KEK_DATABASE_URL", "DEK_DATABASE_URL", "HKMS_ROOT_KEY_FILE"))
    }
    env.update(
        {
            "HKMS_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
            "HKMS_ROOT_KEY_PROVIDER": "file",
        }
    )
    names = []
    if postgres_enabled():
        suffix = uuid.uuid4().hex[:10]
        for alias in ALL:
            name = f"hkms_drill_{suffix}_{alias}"
            _pg_admin(f'CREATE DATABASE "{name}"')
            names.append(name)
            env[f"HKMS_PG_{alias.upper()}_NAME"] = name
        env["HKMS_TEST_POSTGRES"] = "1"
    else:
        env["HKMS_TEST_POSTGRES"] = "0"
    yield data_dir, env
    for name in names:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db(databases=ALL, transaction=True)
def test_restore_drill_old_backup_after_rotating_every_level(project, tmp_path, fresh_installation):
    # State at backup time: two secrets, three versions.
    first = secret_create(project=project, name="db-password")
    for payload in (b"drill-one", b"drill-two"):
        secret_version_create(secret=first, data=payload)
    second = secret_create(project=project, name="api-token", path="/apps")
    secret_version_create(secret=second, data=b"drill-three")
    before = payloads()
    assert len(before) == 3

    private = tmp_path / "backup.key"
    run("backup_keygen", str(private))
    archive = tmp_path / "hkms.backup"
    manifest = json.loads(run("backup", str(archive), "--encrypt-to", f"{private}.pub", "--json"))
    assert manifest["encrypted"] is True and manifest["root_key"]["versions_needed"] == [1]
    assert manifest["counts"]["secret_version_with_payload"] == 3 and manifest["counts"]["project"] == 1
    assert envelope.is_encrypted(archive.read_bytes()[:8])
    for payload in (b"drill-one", b"drill-two", b"drill-three"):
        assert payload not in archive.read_bytes()  # encrypted, and payloads are ciphertext anyway
    keyring_kept = keyring_versions()
    deks_at_backup = {str(v): d for v, d in SecretVersion.objects.values_list("id", "dek_id")}

    # Rotate every level, then write more.
    run("rotate_root_key")
    run("rotate_kek", str(project.default_key_id))
    run("rewrap_deks")
    run("rotate_deks", "--all")
    third = secret_create(project=project, name="after-backup")
    secret_version_create(secret=third, data=b"drill-later")
    assert RootKeyVersion.objects.using("kek").get(version=1).state == "retired"
    assert not KekVersion.objects.using("kek").filter(rek_version=1).exclude(state="destroyed").exists()
    assert keyring_versions() == {1, 2}, "a retained backup needs REK v1: its material is kept"
    rotated_deks = {str(v): d for v, d in SecretVersion.objects.values_list("id", "dek_id")}
    assert all(rotated_deks[v] != dek for v, dek in deks_at_backup.items()), "rotate_deks gave every version a new DEK"

    # Restore the old backup into a fresh installation, with the root key file kept beside it.
    data_dir, env = fresh_installation
    shutil.copy(settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"], data_dir / "root_keyring.json")
    os.chmod(data_dir / "root_keyring.json", 0o600)
    script = f"ARCHIVE = {str(archive)!r}; KEY = {str(private)!r}\n" + READ_BACK
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    restored = json.loads(result.stdout.split("PAYLOADS ", 1)[1])
    assert restored == before  # every old payload, identical; nothing written after the backup
    assert "hierarchy OK" in result.stdout and "audit log OK" in result.stdout
    assert keyring_kept == {1}

    # Forgetting the backup destroys REK v1 for good: the archive can no longer be opened anywhere.
    plan = json.loads(run("forget_backup", manifest["backup_id"], "--dry-run", "--json"))
    assert plan["would_destroy_rek_versions"] == [1] and keyring_versions() == {1, 2}
    with pytest.raises(CommandError, match=r"^refusing without confirmation"):
        call_command("forget_backup", manifest["backup_id"], stdout=StringIO())
    run("forget_backup", manifest["backup_id"], "--yes")
    assert keyring_versions() == {2}
    assert BackupRecord.objects.using("kek").get(id=manifest["backup_id"]).state == "forgotten"
