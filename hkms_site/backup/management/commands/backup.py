from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_site.backup.services import BackupError, backup_create
from hkms_site.backup.snapshot import SnapshotError
from keys_app.errors import HierarchyError


class Command(BaseCommand):
    help = (
        "Write a consistent backup of the three databases and a manifest as one archive (never the root key). "
        "--encrypt-to PUBLIC.pem encrypts it to an operator's X25519 key (backup_keygen). While the backup is "
        "retained, rotate_root_key keeps the root key versions it needs (forget_backup releases them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output", help="archive file to create (never overwritten)")
        parser.add_argument("--encrypt-to", metavar="PUBLIC_KEY", help="X25519 public key PEM file to encrypt to")
        parser.add_argument("--json", action="store_true", help="print the manifest as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        public_key = None
        if options.get("encrypt_to"):
            try:
                public_key = Path(options["encrypt_to"]).read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {options['encrypt_to']}: {exc.strerror}") from None
        quiet = options["json"] or not sys.stderr.isatty()
        try:
            result = backup_create(
                principal=Principal.for_command(),
                output=Path(options["output"]),
                public_key=public_key,
                progress=None if quiet else lambda message: self.stderr.write(message),
            )
        except (BackupError, SnapshotError, HierarchyError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, sort_keys=True))
            return
        root = result["root_key"]
        counts = result["counts"]
        self.stdout.write(f"backup {result['backup_id']} written to {result['archive']}")
        self.stdout.write(f"  sha256 {result['archive_sha256']}; encrypted: {'yes' if result['encrypted'] else 'no'}")
        self.stdout.write(
            f"  {counts['project']} project(s), {counts['secret']} secret(s), {counts['secret_version_with_payload']} "
            f"version(s) with a payload, {counts['key']} key(s), {counts['audit_event']} audit event(s)"
        )
        versions = ", ".join(
            f"v{v['version']} ({v['provider']}, check value {v['check_value'][:16]}…)"
            for v in root["versions"]
            if v["version"] in root["versions_needed"]
        )
        self.stdout.write(f"  needs root key version(s): {versions}")
        for provider, advice in root["keep_beside_the_archive"].items():
            self.stdout.write(f"  keep beside it ({provider}): {advice}")
        for note in root["notes"] + result["warnings"]:
            self.stdout.write(f"  note: {note}")
