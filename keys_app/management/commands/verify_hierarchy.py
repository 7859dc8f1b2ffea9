from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.services.inspection import hierarchy_verify


class Command(HierarchyCommand):
    audited = False
    help = "Check that every KEK version and DEK unwraps and every secret version decrypts; exit 1 on failure."
    batch_option = True
    default_batch_size = 1000

    def add_command_arguments(self, parser: CommandParser) -> None:
        pass

    def run(self, **options: Any) -> None:
        result = hierarchy_verify(batch_size=options["batch_size"], progress=self.progress())
        if self.as_json:
            self.stdout.write(json.dumps(result, sort_keys=True))
        else:
            checked = ", ".join(f"{n} {what}" for what, n in result["checked"].items())
            self.stdout.write(f"checked {checked}; unreferenced DEKs: {result['unreferenced_deks']}")
            for failure in result["failures"]:
                self.stdout.write(f"FAILED {failure}")
            self.stdout.write("hierarchy OK" if result["ok"] else f"{len(result['failures'])} failure(s)")
        if not result["ok"]:
            raise SystemExit(1)
