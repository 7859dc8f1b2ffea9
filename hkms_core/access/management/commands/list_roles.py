from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.listing import role_grants_list
from hkms_core.access.principal import Principal
from hkms_core.access.roles import ROLES
from hkms_core.cli import write_rows
from hkms_core.errors import ServiceError


class Command(BaseCommand):
    help = "List role grants (user, role, object, project); --available lists the roles and what they allow."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="only this user's grants")
        parser.add_argument("--project", help="only grants within this project (id or name)")
        parser.add_argument("--available", action="store_true", help="list the roles themselves")
        parser.add_argument("--json", action="store_true", help="print one JSON array")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["available"]:
            rows = [{"role": name, "allows": ", ".join(sorted(ROLES[name]))} for name in ROLES]
            write_rows(self.stdout, rows, ["role", "allows"], as_json=options["json"], empty="")
            return
        try:
            rows = role_grants_list(
                principal=Principal.for_command(), username=options.get("user"), project=options.get("project")
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        columns = ["user", "role", "object_type", "object_id", "project_id", "granted_by"]
        write_rows(self.stdout, rows, columns, as_json=options["json"], empty="no role grants")
