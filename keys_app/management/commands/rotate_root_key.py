from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.services.rotation import rek_rotate


class Command(HierarchyCommand):
    help = "Create a new REK version, re-wrap every KEK version under it and retire the old one (resumable)."
    batch_option = True
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to-provider", help="create the new REK version in this provider")

    def run(self, **options: Any) -> dict[str, Any]:
        return rek_rotate(
            to_provider=options.get("to_provider"),
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            progress=self.progress(),
        )
