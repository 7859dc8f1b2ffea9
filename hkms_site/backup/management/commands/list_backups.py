from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hkms_core.cli import write_rows
from hkms_site.backup.retention import backup_records


class Command(BaseCommand):
    help = "List the backups this installation made, whether they are retained, and the root key versions they need."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [{**r, "rek_versions": ",".join(str(v) for v in r["rek_versions"])} for r in backup_records()]
        if options["json"]:
            rows = backup_records()
        columns = ["id", "created_at", "state", "rek_versions", "archive"]
        write_rows(self.stdout, rows, columns, as_json=options["json"], empty="no backups")
