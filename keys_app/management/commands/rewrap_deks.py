from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand, key_by_id
from keys_app.services.rotation.kek import deks_rewrap


class Command(HierarchyCommand):
    help = "Re-wrap every DEK not wrapped by its key's primary KEK version (resumable, idempotent)."
    batch_option = True
    dry_run_option = True
    default_batch_size = 1000

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", help="only the DEKs of this key id")

    def run(self, **options: Any) -> dict[str, Any]:
        key = key_by_id(options["key"]) if options.get("key") else None
        return deks_rewrap(
            key=key, batch_size=options["batch_size"], dry_run=options["dry_run"], progress=self.progress()
        )
