from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_site.backup.restore import backup_restore
from hkms_site.backup.services import BackupError
from hkms_site.backup.snapshot import SnapshotError
from keys_app.errors import HierarchyError


class Command(BaseCommand):
    help = (
        "Restore a backup archive into this installation, which must be empty (fresh data dir or fresh "
        "databases), then migrate and verify the audit log and the hierarchy. The root key provider must "
        "hold the root key versions the backup needs. Exit 1 if verification fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive")
        parser.add_argument("--private-key", metavar="FILE", help="X25519 private key PEM of an encrypted backup")
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        private_key = None
        if options.get("private_key"):
            try:
                private_key = Path(options["private_key"]).read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {options['private_key']}: {exc.strerror}") from None
        quiet = options["json"] or not sys.stderr.isatty()
        try:
            result = backup_restore(
                principal=Principal.for_command(),
                archive=Path(options["archive"]),
                private_key=private_key,
                progress=None if quiet else lambda message: self.stderr.write(message),
            )
        except (BackupError, SnapshotError, HierarchyError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, sort_keys=True, default=str))
        else:
            self.stdout.write(f"restored backup {result['backup_id']} of {result['created_at']}")
            audit = result["audit_log"]
            self.stdout.write(f"  audit log: {'OK' if audit['ok'] else 'BROKEN'} ({audit['checked']} events)")
            hierarchy = result["hierarchy"]
            if hierarchy is not None:
                checked = ", ".join(f"{n} {what}" for what, n in hierarchy["checked"].items())
                self.stdout.write(f"  hierarchy: {'OK' if hierarchy['ok'] else 'FAILED'} ({checked})")
                for failure in hierarchy["failures"][:20]:
                    self.stdout.write(f"  FAILED {failure}")
            for note in result["notes"]:
                self.stdout.write(f"  note: {note}")
        if not result["ok"]:
            raise CommandError("the restored installation did not verify (see above)")
