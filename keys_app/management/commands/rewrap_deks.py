from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from hkms_core.access.principal import Principal
from keys_app.management.base import HierarchyCommand, key_by_id
from keys_app.services.keys.scheduling import key_rewrap_deks
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
        if key is not None and not options["dry_run"]:
            # One key: the action the console calls too (audited as key.rewrap_deks).
            return key_rewrap_deks(
                principal=Principal.for_command(),
                key=key,
                runner="command",
                batch_size=options["batch_size"],
                progress=self.progress(),
            )
        return deks_rewrap(
            key=key, batch_size=options["batch_size"], dry_run=options["dry_run"], progress=self.progress()
        )
