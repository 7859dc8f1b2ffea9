from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.cli import parse_now
from hkms_core.errors import ServiceError
from keys_app.management.base import HierarchyCommand
from keys_app.management.confirm import add_yes_argument, confirm
from secrets_app.services.expiry import secret_versions_expire


class Command(HierarchyCommand):
    help = (
        "Apply ephemeral secret policies for good (disable or destroy expired versions) and destroy the "
        "secrets and versions whose 7-day deletion window has passed (their DEKs are deleted: crypto-shredding). "
        "Asks for confirmation on a terminal when something would be destroyed; --yes for cron. Idempotent."
    )
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now", help="pretend the time is this ISO 8601 instant (catch-up runs; a future one only with --dry-run)"
        )
        add_yes_argument(parser)

    def run(self, **options: Any) -> dict[str, Any]:
        now = parse_now(options.get("now"))
        if now is not None and now > timezone.now() and not options["dry_run"]:
            raise CommandError(
                "--now is in the future: that would destroy versions before their 7-day deletion window ends; "
                "only --dry-run accepts a future --now"
            )
        principal = Principal.for_command()
        try:
            if not options["dry_run"]:
                due = secret_versions_expire(principal=principal, now=now, dry_run=True)
                if due["versions_destroyed"] or due["secrets_destroyed"]:
                    confirm(
                        options,
                        f"destroy {due['versions_destroyed']} secret version(s) and {due['secrets_destroyed']} "
                        "secret(s) for good (their DEKs are deleted: unrecoverable)",
                    )
            counts = secret_versions_expire(principal=principal, now=now, dry_run=options["dry_run"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        return {"dry_run": bool(options["dry_run"]), **counts}

    def render(self, result: dict[str, Any]) -> str:
        disabled, destroyed = ("would disable", "would destroy") if result["dry_run"] else ("disabled", "destroyed")
        return (
            f"{disabled} {result['versions_disabled']} expired version(s); "
            f"{destroyed} {result['versions_destroyed']} version(s) and {result['secrets_destroyed']} secret(s)"
        )
