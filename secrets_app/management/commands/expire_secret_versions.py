from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hkms_site.access.principal import Principal
from hkms_site.errors import ServiceError
from keys_app.management.base import HierarchyCommand
from keys_app.management.commands.run_due_rotations import parse_now
from secrets_app.services import secret_versions_expire


class Command(HierarchyCommand):
    help = (
        "Apply ephemeral secret policies for good (disable or destroy expired versions) and destroy the "
        "secrets and versions whose 7-day deletion window has passed (their DEKs are deleted: crypto-shredding). "
        "Idempotent; schedule it with cron or a systemd timer."
    )
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="pretend the time is this ISO 8601 instant (tests, catch-up runs)")

    def run(self, **options: Any) -> dict[str, Any]:
        now = parse_now(options.get("now"))
        try:
            counts = secret_versions_expire(principal=Principal.for_command(), now=now, dry_run=options["dry_run"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        return {"dry_run": bool(options["dry_run"]), **counts}

    def render(self, result: dict[str, Any]) -> str:
        disabled, destroyed = ("would disable", "would destroy") if result["dry_run"] else ("disabled", "destroyed")
        return (
            f"{disabled} {result['versions_disabled']} expired version(s); "
            f"{destroyed} {result['versions_destroyed']} version(s) and {result['secrets_destroyed']} secret(s)"
        )
