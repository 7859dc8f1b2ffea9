"""Backup pieces: the archive envelope, the reference check, refusals, retries (fast, no subprocess)."""

from __future__ import annotations

import io
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from hkms_site.backup import envelope, services, snapshot
from hkms_site.backup.models import BackupRecord


# --- envelope ----------------------------------------------------------------------------------
def seal(data: bytes, public_pem: bytes) -> bytes:
    out = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(data), out, envelope.load_public_key(public_pem))
    return out.getvalue()


def unseal(blob: bytes, private_pem: bytes) -> bytes:
    out = io.BytesIO()
    envelope.decrypt_stream(io.BytesIO(blob), out, envelope.load_private_key(private_pem))
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 5, envelope.CHUNK, envelope.CHUNK * 2 + 7])
def test_envelope_round_trip(size):
    private, public = envelope.generate_keypair()
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    blob = seal(data, public)
    assert envelope.is_encrypted(blob) and unseal(blob, private) == data


def test_envelope_refuses_wrong_key_truncation_tampering_and_reordering():
    private, public = envelope.generate_keypair()
    other, _ = envelope.generate_keypair()
    blob = seal(b"a" * (envelope.CHUNK + 10), public)
    header = len(envelope.MAGIC) + 48
    first_len = int.from_bytes(blob[header : header + 4], "big")
    cut = header + 4 + first_len  # exactly after the first (non-final) chunk
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    header_edit = bytearray(blob)
    header_edit[len(envelope.MAGIC) + 40] ^= 1  # the salt
    for bad, key in [
        (blob, other),
        (blob[:cut], private),
        (blob[:-1], private),
        (bytes(tampered), private),
        (bytes(header_edit), private),
        (blob + b"\0", private),
    ]:
        with pytest.raises(envelope.BackupDecryptionError) as info:
            unseal(bad, key)
        assert "a" * 8 not in str(info.value)


# --- reference check ---------------------------------------------------------------------------
def fake_query(tables: dict[str, list[tuple]]):
    def query(alias: str, sql: str) -> list[tuple]:
        for marker, rows in tables.items():
            if marker in sql:
                return rows
        return []

    return query


KEY = "6a1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00"
DEK = "7b1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00"


def test_check_references_finds_dangling_references_and_the_rek_versions_needed():
    facts = snapshot.check_references(
        fake_query(
            {
                "rek_version, state FROM": [(KEY, 1, 2, "enabled"), (KEY, 2, 3, "destroyed")],
                "check_value": [(2, "file", b"\x01\x02", "active")],
                "SELECT id, key_id, kek_version": [(DEK, KEY, 1)],
                "dek_id, status": [
                    (DEK, "enabled"),
                    ("8c1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00", "enabled"),
                    ("9d1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00", "scheduled_for_deletion"),
                ],
                "COUNT(*)": [(0,)],
            }
        )
    )
    assert facts["rek_versions_needed"] == [2]
    assert facts["dangling"] == [
        "secret version with DEK 8c1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00 (enabled): the DEK is not in the dek snapshot"
    ]
    assert len(facts["warnings"]) == 1 and "scheduled_for_deletion" in facts["warnings"][0]
    broken = snapshot.check_references(
        fake_query(
            {
                "rek_version, state FROM": [(KEY, 1, 5, "destroyed")],
                "SELECT id, key_id, kek_version": [(DEK, KEY, 1)],
                "COUNT(*)": [(0,)],
            }
        )
    )
    assert broken["dangling"] == [f"DEK {DEK}: KEK version 1 of key {KEY} is not in the kek snapshot"]
    # The audit chain's key, when the installation has one, is wrapped by a REK version too.
    audited = snapshot.check_references(
        fake_query(
            {
                "sqlite_master": [("audit_auditkey",), ("keys_app_kekversion",)],
                '"audit_auditkey"': [(1, 2), (2, 4)],
                "check_value": [(2, "file", b"\x01", "active")],
                "COUNT(*)": [(0,)],
            }
        )
    )
    assert audited["rek_versions_needed"] == [2, 4]
    assert audited["dangling"] == ["audit key version 2: REK version 4 is not recorded"]


# --- commands ----------------------------------------------------------------------------------
def error(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_restore_refuses_a_non_empty_installation(project, tmp_path):
    archive = tmp_path / "b.tar"
    archive.write_bytes(b"whatever")
    assert error("restore", str(archive)).startswith("this installation is not empty (1 root key versions, ")
    assert error("restore", str(tmp_path / "missing")) == f"{tmp_path / 'missing'} does not exist"


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_backup_refuses_to_overwrite_and_leaves_no_record(project, tmp_path):
    existing = tmp_path / "there"
    existing.write_text("keep me")
    assert (
        error("backup", str(existing)) == f"{existing} exists: choose a new file name (backups are never overwritten)"
    )
    assert existing.read_text() == "keep me"
    assert error("backup", str(tmp_path / "b"), "--encrypt-to", str(existing)) == "not a PEM public key"
    assert not BackupRecord.objects.using("kek").exists()


@pytest.mark.django_db(databases=["default", "kek", "dek"], transaction=True)
def test_backup_retries_a_snapshot_with_dangling_references(project, tmp_path, monkeypatch):
    real = snapshot.check_references
    calls = []

    def flaky(query, kind):
        facts = real(query, kind)
        calls.append(1)
        return {**facts, "dangling": ["DEK x: moved under the backup"]} if len(calls) == 1 else facts

    monkeypatch.setattr(snapshot, "check_references", flaky)
    out = StringIO()
    call_command("backup", str(tmp_path / "b.tar"), "--json", stdout=out)
    manifest = json.loads(out.getvalue())
    assert manifest["snapshot_attempts"] == 2 and len(calls) == 2
    assert BackupRecord.objects.using("kek").get(id=manifest["backup_id"]).rek_versions == [1]

    monkeypatch.setattr(
        snapshot, "check_references", lambda query, kind: {**real(query, kind), "dangling": ["DEK y: gone"]}
    )
    message = error("backup", str(tmp_path / "c.tar"))
    assert message.startswith(f"the databases changed under the backup {services.ATTEMPTS} times")
    assert not (tmp_path / "c.tar").exists()
    assert BackupRecord.objects.using("kek").count() == 1  # the failed backup retains nothing


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_a_root_key_version_the_provider_lacks_or_does_not_match_is_refused(hierarchy):
    held = {"version": 1, "provider": "file", "check_value": bytes(hierarchy.check_value).hex(), "state": "active"}
    assert services.provider_check([held], [1]) == []
    with pytest.raises(services.BackupError) as info:
        services.provider_check([{**held, "version": 7}], [7])
    assert str(info.value).startswith("REK version 7 (file provider) is not available: root key version 7 is not in")
    with pytest.raises(services.BackupError) as info:
        services.provider_check([{**held, "check_value": "00" * 16}], [1])
    assert "does not match the check value" in str(info.value)
