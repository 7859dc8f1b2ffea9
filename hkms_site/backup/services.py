"""``backup``: one archive of the three databases plus a manifest (``restore``: :mod:`.restore`).

An archive is a tar file holding ``manifest.json`` and one snapshot per
database (``default``, ``kek``, ``dek``: SQLite files or ``pg_dump`` custom
dumps), optionally encrypted to an operator's X25519 public key
(:mod:`hkms_site.backup.envelope`).  It never holds a root key: the kek
snapshot holds KEK versions *wrapped* by REK versions, which stay in their
provider; the manifest names those versions and their key check values, and
``backup`` records them (:mod:`hkms_site.backup.retention`) so that a later
``rotate_root_key`` keeps their material while the backup is retained.

Backup order (each step committed before the next):

1. record the backup (kek database), retaining every active REK version;
2. snapshot ``default``, ``dek``, ``kek`` and check their references
   (:mod:`hkms_site.backup.snapshot`), retrying a few times on a dangling one;
3. narrow the record to the REK versions the snapshot needs and check that
   the provider still holds each of them (unless it is sealed);
4. write the archive (temporary file, fsync, rename), then audit ``backup.create``.

A failure at any step deletes the record (nothing retained) and leaves no archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_record
from hkms_site.backup import envelope, snapshot
from hkms_site.backup.models import BackupRecord
from keys_app.models import RootKeyVersion
from keys_app.providers import RootKeyUnavailable, get_provider

FORMAT = "hkms-backup"
FORMAT_VERSION = 1
ATTEMPTS = 5


class BackupError(Exception):
    """A backup or restore cannot proceed; the message says why and what to do (never key bytes)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provider_check(versions: list[dict[str, Any]], needed: list[int]) -> list[str]:
    """Check that each needed REK version is held by its provider with the recorded check value.

    Returns notes (a sealed provider cannot be checked now); raises ``BackupError`` on a mismatch.
    """
    notes = []
    by_version = {v["version"]: v for v in versions}
    for version in needed:
        row = by_version[version]
        try:
            provider = get_provider(row["provider"])
            if provider.sealed:
                notes.append(f"REK version {version} ({row['provider']}): sealed, check value not verified")
                continue
            actual = provider.check_value(version).hex()
        except RootKeyUnavailable as exc:
            raise BackupError(f"REK version {version} ({row['provider']} provider) is not available: {exc}") from None
        if actual != row["check_value"]:
            raise BackupError(
                f"REK version {version} held by the {row['provider']} provider does not match the check value "
                "recorded in the kek database"
            )
    return notes


def _custody(versions: list[dict[str, Any]], needed: list[int]) -> dict[str, str]:
    """What the operator must keep beside the archive, per provider the backup needs."""
    providers = {v["provider"] for v in versions if v["version"] in needed}
    advice = {
        "file": "a copy of the root key file (HKMS_ROOT_KEY_FILE, default $HKMS_DATA_DIR/root_keyring.json) "
        "holding these versions, stored apart from the archive",
        "shamir": "the custodians' shares of these versions (a threshold of them unseals the restored installation)",
        "pkcs11": "the HSM token (or its vendor backup) holding these key objects, its PIN, and the module path",
    }
    return {name: advice.get(name, "the provider's key material for these versions") for name in sorted(providers)}


def backup_create(
    *,
    principal: Principal,
    output: Path,
    public_key: bytes | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a consistent backup archive to ``output``; returns its manifest plus the archive's SHA-256."""
    say = progress or (lambda _message: None)
    recipient = envelope.load_public_key(public_key) if public_key is not None else None
    kind = snapshot.engine()
    output = output.resolve()
    if output.exists():
        raise BackupError(f"{output} exists: choose a new file name (backups are never overwritten)")
    if not output.parent.is_dir():
        raise BackupError(f"directory {output.parent} does not exist")
    active = sorted(
        RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.ACTIVE).values_list("version", flat=True)
    )
    if not active:
        raise BackupError("the key hierarchy is not initialised: there is nothing to back up")
    record = BackupRecord.objects.using("kek").create(created_at=timezone.now(), rek_versions=active)
    try:
        with tempfile.TemporaryDirectory(prefix=".hkms-backup-", dir=output.parent) as work:
            workdir = Path(work)
            manifest = _snapshot_until_consistent(kind, workdir, record, say)
            say("writing the archive")
            archive = workdir / "archive.tar"
            with tarfile.open(archive, "w") as tar:
                body = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size, info.mtime, info.mode = len(body), int(timezone.now().timestamp()), 0o600
                tar.addfile(info, io.BytesIO(body))
                for alias in snapshot.ALIASES:
                    tar.add(
                        workdir / manifest["databases"][alias]["file"], arcname=manifest["databases"][alias]["file"]
                    )
            final = workdir / "final"
            if recipient is not None:
                with archive.open("rb") as source, final.open("wb") as target:
                    envelope.encrypt_stream(source, target, recipient)
            else:
                archive.rename(final)
            with final.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(final, 0o600)
            digest = sha256_file(final)
            os.link(final, output)  # fails rather than overwrite a file created meanwhile
    except BaseException:
        BackupRecord.objects.using("kek").filter(id=record.id).delete()
        raise
    BackupRecord.objects.using("kek").filter(id=record.id).update(archive=str(output), sha256=digest)
    with transaction.atomic():
        audit_record(
            principal,
            "backup.create",
            ("backup", record.id, ""),
            sha256=digest,
            encrypted=recipient is not None,
            rek_versions=manifest["root_key"]["versions_needed"],
        )
    return {**manifest, "archive": str(output), "archive_sha256": digest, "encrypted": recipient is not None}


class _Dangling(Exception):
    pass


def _snapshot_until_consistent(
    kind: str, workdir: Path, record: BackupRecord, say: Callable[[str], None]
) -> dict[str, Any]:
    taker = snapshot.sqlite_snapshot if kind == "sqlite" else snapshot.postgres_snapshot
    dangling: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        say(f"snapshot attempt {attempt}: default, dek, kek")
        try:
            with taker(workdir) as (files, query):
                facts = snapshot.check_references(query, kind)
                dangling = facts["dangling"]
                if dangling:
                    raise _Dangling()  # no dump of an inconsistent snapshot
        except _Dangling:
            continue
        # The record retained every version active before the kek snapshot; keep what it needs.
        needed = facts["rek_versions_needed"]
        BackupRecord.objects.using("kek").filter(id=record.id).update(rek_versions=needed)
        notes = provider_check(facts["rek_versions"], needed)
        return _manifest(kind, record, files, facts, attempt, notes)
    shown = "; ".join(dangling[:3])
    raise BackupError(
        f"the databases changed under the backup {ATTEMPTS} times (a rotation or destruction was running): "
        f"{len(dangling)} dangling reference(s), e.g. {shown}; try again when it has finished"
    )


def _manifest(
    kind: str, record: BackupRecord, files: dict[str, Path], facts: dict[str, Any], attempts: int, notes: list[str]
) -> dict[str, Any]:
    # local: only a backup's manifest reads the installed version (importlib.metadata scans distributions)
    from importlib.metadata import PackageNotFoundError, version

    try:
        hkms_version = version("hkms")
    except PackageNotFoundError:
        hkms_version = "unknown"
    needed = facts["rek_versions_needed"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backup_id": str(record.id),
        "created_at": timezone.now().isoformat(),
        "hkms_version": hkms_version,
        "engine": kind,
        "snapshot_order": list(snapshot.ORDER),
        "snapshot_attempts": attempts,
        "databases": {
            alias: {
                "file": files[alias].name,
                "sha256": sha256_file(files[alias]),
                "bytes": files[alias].stat().st_size,
                "migrations": facts["migrations"][alias],
            }
            for alias in snapshot.ALIASES
        },
        "root_key": {
            "provider_setting": settings.HKMS_ROOT_KEY_PROVIDER,
            "versions": facts["rek_versions"],
            "versions_needed": needed,
            "keep_beside_the_archive": _custody(facts["rek_versions"], needed),
            "notes": notes,
        },
        "counts": facts["counts"],
        "audit_head": facts["audit_head"],
        "warnings": facts["warnings"],
    }
