from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand, key_by_id
from keys_app.services.rotation import key_exposure_report, key_revoke


class Command(HierarchyCommand):
    help = (
        "Revoke a compromised key: rotate it, re-encrypt everything under it, destroy the old "
        "material, and print an exposure report."
    )
    batch_option = True
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")
        parser.add_argument("--reason", required=True, help="why the key is revoked (kept in the job record)")

    def run(self, **options: Any) -> dict[str, Any]:
        key = key_by_id(options["key_id"])
        if options["dry_run"]:
            return {"dry_run": True, "exposure": key_exposure_report(key)}
        return key_revoke(key=key, reason=options["reason"], batch_size=options["batch_size"], progress=self.progress())

    def render(self, result: dict[str, Any]) -> str:
        return "Exposure report (what the revoked material protected):\n" + json.dumps(result, indent=2, default=str)
