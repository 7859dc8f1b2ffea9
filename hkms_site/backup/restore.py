"""``restore``: a backup archive into an empty installation, then migrate and verify.

Order: refuse a non-empty installation or another engine; decrypt and unpack
into a temporary directory, checking every file against the manifest's SHA-256;
check that the root key provider holds every REK version the backup needs
(before anything is written); put the snapshots in place; migrate; verify the
audit chain and the hierarchy; append ``backup.restore`` to the restored chain.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections, transaction

from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_record, audit_verify
from hkms_core.tenancy.models import Project
from hkms_site.backup import envelope, snapshot
from hkms_site.backup.services import FORMAT, FORMAT_VERSION, BackupError, provider_check, sha256_file
from keys_app.models import Dek, RootKeyVersion
from keys_app.services import material, root
from secrets_app.services.verification import hierarchy_verify


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
                if sha256_file(target) != manifest["databases"][alias]["sha256"]:
                    raise BackupError(f"{name} in the archive does not match its checksum in the manifest")
                files[alias] = target
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise BackupError(f"{archive} is not a readable HKMS backup archive ({type(exc).__name__})") from None
    return manifest, files


def installation_contents() -> dict[str, int]:
    """Rows that make an installation non-empty (missing tables count as empty)."""
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
            notes = provider_check(manifest["root_key"]["versions"], needed)
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
