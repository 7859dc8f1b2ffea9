from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_core.errors import ServiceError
from hkms_site.backup.retention import backup_forget
from keys_app.errors import HierarchyError
from keys_app.management.confirm import add_yes_argument, confirm


class Command(BaseCommand):
    help = (
        "Stop retaining a backup (delete the archive yourself): destroy the material of retired root key "
        "versions that no retained backup needs any more, which makes this backup undecryptable. "
        "Asks on a terminal; --yes for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup_id")
        parser.add_argument("--dry-run", action="store_true", help="say what would be destroyed")
        parser.add_argument("--json", action="store_true")
        add_yes_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        principal = Principal.for_command()
        try:
            plan = backup_forget(principal=principal, backup_id=options["backup_id"], dry_run=True)
            if options["dry_run"]:
                result = plan
            else:
                doomed = plan["would_destroy_rek_versions"]
                if doomed:
                    confirm(
                        options, f"destroy root key version(s) {doomed}: backups that need them become undecryptable"
                    )
                result = backup_forget(principal=principal, backup_id=options["backup_id"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        except (HierarchyError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, sort_keys=True))
        elif options["dry_run"]:
            self.stdout.write(
                f"would forget backup {result['backup_id']}; would destroy root key versions "
                f"{result['would_destroy_rek_versions'] or 'none'}"
            )
        else:
            self.stdout.write(
                f"forgot backup {result['backup_id']}; destroyed root key versions "
                f"{result['destroyed_rek_versions'] or 'none'}"
            )
