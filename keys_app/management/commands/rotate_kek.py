from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand, key_by_id
from keys_app.services.rotation.kek import kek_rotate


class Command(HierarchyCommand):
    help = "Make a new KEK version primary for a key; existing DEKs are re-wrapped later by rewrap_deks."
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")

    def run(self, **options: Any) -> dict[str, Any]:
        key = key_by_id(options["key_id"])
        if options["dry_run"]:
            return {"dry_run": True, "key_id": str(key.id), "new_version": key.primary_version + 1}
        before = key.primary_version
        key = kek_rotate(key=key)
        return {
            "key_id": str(key.id),
            "previous_version": before,
            "primary_version": key.primary_version,
            "rotation_count": key.rotation_count,
        }
