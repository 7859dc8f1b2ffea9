from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand, key_by_id
from secrets_app.models import Secret
from secrets_app.services.dek_rotation import deks_rotate


class Command(HierarchyCommand):
    help = "Re-encrypt secret versions under fresh DEKs (resumable; reads and writes go on)."
    batch_option = True
    default_batch_size = 1000
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--key", help="every secret version protected by this key id")
        scope.add_argument("--secret", help="every version of this secret id")
        scope.add_argument("--all", action="store_true", help="every secret version")

    def run(self, **options: Any) -> dict[str, Any]:
        key = key_by_id(options["key"]) if options.get("key") else None
        secret_id = None
        if options.get("secret"):
            try:
                secret_id = uuid.UUID(options["secret"])
            except ValueError:
                raise CommandError(f"{options['secret']!r} is not a secret id (a UUID)") from None
            if not Secret.objects.filter(id=secret_id).exists():
                raise CommandError(f"secret {secret_id} does not exist")
        return deks_rotate(
            key=key,
            secret_id=secret_id,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            progress=self.progress(),
        )
