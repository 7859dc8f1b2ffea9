"""``backup``: one archive of the three databases plus a manifest; ``restore`` into an empty installation.

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
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone

from hkms_site.access.principal import Principal
from hkms_site.backup import envelope, snapshot
from hkms_site.backup.models import BackupRecord

FORMAT = "hkms-backup"
FORMAT_VERSION = 1
ATTEMPTS = 5


class BackupError(Exception):
    """A backup or restore cannot proceed; the message says why and what to do (never key bytes)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provider_check(versions: list[dict[str, Any]], needed: list[int]) -> list[str]:
    """Check that each needed REK version is held by its provider with the recorded check value.

    Returns notes (a sealed provider cannot be checked now); raises ``BackupError`` on a mismatch.
    """
    from keys_app.providers import RootKeyUnavailable, get_provider

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
    from hkms_site.audit.services import audit_record
    from keys_app.models import RootKeyVersion

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
            digest = _sha256(final)
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
                facts = snapshot.check_references(query)
                dangling = facts["dangling"]
                if dangling:
                    raise _Dangling()  # no dump of an inconsistent snapshot
        except _Dangling:
            continue
        # The record retained every version active before the kek snapshot; keep what it needs.
        needed = facts["rek_versions_needed"]
        BackupRecord.objects.using("kek").filter(id=record.id).update(rek_versions=needed)
        notes = _provider_check(facts["rek_versions"], needed)
        return _manifest(kind, record, files, facts, attempt, notes)
    shown = "; ".join(dangling[:3])
    raise BackupError(
        f"the databases changed under the backup {ATTEMPTS} times (a rotation or destruction was running): "
        f"{len(dangling)} dangling reference(s), e.g. {shown}; try again when it has finished"
    )


def _manifest(
    kind: str, record: BackupRecord, files: dict[str, Path], facts: dict[str, Any], attempts: int, notes: list[str]
) -> dict[str, Any]:
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
                "sha256": _sha256(files[alias]),
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


# --- restore ------------------------------------------------------------------------------------
def _open_archive(path: Path, private_key: bytes | None, workdir: Path) -> Path:
    with path.open("rb") as handle:
        head = handle.read(len(envelope.MAGIC))
    if not envelope.is_encrypted(head):
        return path
    if private_key is None:
        raise BackupError(f"{path} is encrypted: pass --private-key with the backup private key")
    try:
        key = envelope.load_private_key(private_key)
    except ValueError as exc:
        raise BackupError(f"the private key file is {exc}") from None
    plain = workdir / "archive.tar"
    try:
        with path.open("rb") as source, plain.open("wb") as target:
            envelope.decrypt_stream(source, target, key)
    except envelope.BackupDecryptionError as exc:
        raise BackupError(str(exc)) from None
    return plain


def _extract(archive: Path, workdir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest and the snapshot files, each checked against the manifest's SHA-256."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.loads(member.read())
            if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
                raise BackupError("this file is not an HKMS backup of a format this version reads")
            files = {}
            for alias in snapshot.ALIASES:
                name = manifest["databases"][alias]["file"]
                if "/" in name or name.startswith("."):
                    raise BackupError(f"the manifest names an unsafe file {name!r}")
                source = tar.extractfile(name)
                if source is None:
                    raise KeyError(name)
                target = workdir / f"restore-{name}"
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                if _sha256(target) != manifest["databases"][alias]["sha256"]:
                    raise BackupError(f"{name} in the archive does not match its checksum in the manifest")
                files[alias] = target
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise BackupError(f"{archive} is not a readable HKMS backup archive ({type(exc).__name__})") from None
    return manifest, files


def installation_contents() -> dict[str, int]:
    """Rows that make an installation non-empty (missing tables count as empty)."""
    from django.contrib.auth import get_user_model

    from hkms_site.audit.models import AuditEvent
    from keys_app.models import Dek, RootKeyVersion
    from secrets_app.models import Project

    found = {}
    for label, model, alias in (
        ("root key versions", RootKeyVersion, "kek"),
        ("DEKs", Dek, "dek"),
        ("projects", Project, "default"),
        ("audit events", AuditEvent, "default"),
        ("users", get_user_model(), "default"),
    ):
        if model._meta.db_table in connections[alias].introspection.table_names():
            found[label] = model.objects.using(alias).count()
    return {label: n for label, n in found.items() if n}


def backup_restore(
    *,
    principal: Principal,
    archive: Path,
    private_key: bytes | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Restore ``archive`` into this (empty) installation, migrate, verify; returns what was checked.

    Refuses a non-empty installation, another database engine, and a root key
    provider that does not hold the REK versions the backup needs (checked
    before anything is written, unless the provider is sealed: then
    ``verify_hierarchy`` after unsealing is the check).
    """
    from hkms_site.audit.services import audit_record, audit_verify
    from keys_app.services import material, root
    from keys_app.services.inspection import hierarchy_verify

    say = progress or (lambda _message: None)
    if not archive.is_file():
        raise BackupError(f"{archive} does not exist")
    kind = snapshot.engine()
    if kind == "sqlite":  # a data dir that does not exist yet is the emptiest installation
        for alias in snapshot.ALIASES:
            Path(str(connections[alias].settings_dict["NAME"])).parent.mkdir(parents=True, exist_ok=True)
    contents = installation_contents()
    if contents:
        held = ", ".join(f"{n} {label}" for label, n in contents.items())
        raise BackupError(f"this installation is not empty ({held}): restore only into fresh, empty databases")
    with tempfile.TemporaryDirectory(prefix=".hkms-restore-") as work:
        workdir = Path(work)
        manifest, files = _extract(_open_archive(archive, private_key, workdir), workdir)
        if manifest["engine"] != kind:
            raise BackupError(f"this backup is of {manifest['engine']} databases; this installation uses {kind}")
        needed = manifest["root_key"]["versions_needed"]
        try:
            notes = _provider_check(manifest["root_key"]["versions"], needed)
        except BackupError as exc:
            keep = "; ".join(f"{k}: {v}" for k, v in manifest["root_key"]["keep_beside_the_archive"].items())
            raise BackupError(f"{exc}. The backup needs REK version(s) {needed}; restore them first ({keep})") from None
        say("restoring the databases")
        connections.close_all()
        if kind == "sqlite":
            snapshot.sqlite_restore(files)
        else:
            snapshot.postgres_restore(files)
    connections.close_all()
    root.forget_verified_root_keys()
    material.key_cache().clear()
    say("applying migrations")
    for alias in snapshot.ALIASES:
        call_command("migrate", database=alias, verbosity=0, interactive=False)
    say("verifying the audit log and the hierarchy")
    audit = audit_verify()
    sealed = any("sealed" in note for note in notes)
    hierarchy = None if sealed else hierarchy_verify()
    ok = audit["ok"] and (hierarchy is None or hierarchy["ok"])
    with transaction.atomic():
        audit_record(
            principal,
            "backup.restore",
            ("backup", manifest["backup_id"], ""),
            outcome="allowed" if ok else "failed",
            verified=ok,
        )
    return {
        "backup_id": manifest["backup_id"],
        "created_at": manifest["created_at"],
        "engine": kind,
        "counts": manifest["counts"],
        "audit_log": audit,
        "hierarchy": hierarchy,
        "notes": notes + (["unseal, then run verify_hierarchy"] if sealed else []),
        "ok": ok,
    }
