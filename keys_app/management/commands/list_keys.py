from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_core.cli import write_rows
from hkms_core.errors import ServiceError
from keys_app.services.listing import keys_list


class Command(BaseCommand):
    help = "List Key Manager keys (metadata only): id, name, project, state, primary version, next rotation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="only this project's keys (id or name)")
        parser.add_argument("--json", action="store_true", help="print one JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rows = keys_list(principal=Principal.for_command(), project=options.get("project"))
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        columns = ["id", "name", "project", "state", "usage", "primary_version", "next_rotation_at"]
        write_rows(self.stdout, rows, columns, as_json=options["json"], empty="no keys")
