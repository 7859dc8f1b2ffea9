from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from secrets_app.services.verification import REPAIR_GRACE, hierarchy_repair, hierarchy_verify


class Command(HierarchyCommand):
    audited = False
    help = (
        "Check that every KEK version and DEK unwraps and every secret version decrypts; exit 1 on any "
        "failure or unreferenced DEK. --repair first destroys unreferenced DEKs and leftover KEK versions "
        "(audited), then checks."
    )
    batch_option = True
    default_batch_size = 1000

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--repair",
            action="store_true",
            help="destroy unreferenced DEKs and KEK versions left under retired root key versions, then verify",
        )
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=int(REPAIR_GRACE.total_seconds()),
            help="with --repair: leave leftovers younger than this whose owner may still be creating them "
            f"(default {int(REPAIR_GRACE.total_seconds())})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Repairs change state: they are audited like every other state-changing command.
        self.audited = bool(options.get("repair"))
        super().handle(*args, **options)

    def run(self, **options: Any) -> None:
        repaired: dict[str, Any] | None = None
        if options["repair"]:
            if options["grace_seconds"] < 0:
                raise CommandError("--grace-seconds must not be negative")
            repaired = hierarchy_repair(
                grace=timedelta(seconds=options["grace_seconds"]), batch_size=options["batch_size"]
            )
            self.audit("allowed", **repaired)  # recorded now: the verification below may exit 1
            self.audited = False
        result = hierarchy_verify(batch_size=options["batch_size"], progress=self.progress())
        if repaired is not None:
            result["repaired"] = repaired
        if self.as_json:
            self.stdout.write(json.dumps(result, sort_keys=True))
        else:
            if repaired is not None:
                self.stdout.write(
                    f"repaired: {repaired['deks_destroyed']} unreferenced DEK(s) destroyed, "
                    f"{repaired['kek_leftovers_removed']} leftover KEK version(s) removed"
                )
            checked = ", ".join(f"{n} {what}" for what, n in result["checked"].items())
            self.stdout.write(f"checked {checked}; unreferenced DEKs: {result['unreferenced_deks']}")
            for failure in result["failures"]:
                self.stdout.write(f"FAILED {failure}")
            self.stdout.write("hierarchy OK" if result["ok"] else f"{len(result['failures'])} failure(s)")
        if not result["ok"]:
            raise SystemExit(1)
