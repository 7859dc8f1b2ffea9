from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hkms_site.audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exit 1 and name the first broken link on any tampering."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify()
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif result["ok"]:
            self.stdout.write(f"audit log OK: {result['checked']} events, chain intact")
        else:
            broken = result["first_broken"]
            self.stdout.write(
                f"audit log BROKEN at event #{broken['seq']}: {broken['reason']} "
                f"({result['checked']} events verified before it)"
            )
        if not result["ok"]:
            raise SystemExit(1)
