from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hkms_core.access.listing import projects_list
from hkms_core.access.principal import Principal
from hkms_core.cli import write_rows


class Command(BaseCommand):
    help = "List projects: id, name, organization, default key, number of secrets and keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = projects_list(principal=Principal.for_command())
        columns = ["id", "name", "organization_id", "default_key_id", "secrets", "keys"]
        empty = "no projects (create one: manage.py create_project NAME)"
        write_rows(self.stdout, rows, columns, as_json=options["json"], empty=empty)
