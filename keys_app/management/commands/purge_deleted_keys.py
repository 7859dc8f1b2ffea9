from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from hkms_core.access.principal import Principal
from hkms_core.cli import parse_now
from keys_app.management.base import HierarchyCommand
from keys_app.management.confirm import add_yes_argument, confirm
from keys_app.services.keys.scheduling import keys_purge_deleted


class Command(HierarchyCommand):
    help = (
        "Crypto-shred keys whose deletion became final (scheduled for deletion more than 7 days ago): "
        "destroy their versions and DEKs, print what that destroyed. Asks on a terminal; --yes for cron. Idempotent."
    )
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="pretend the time is this ISO 8601 instant")
        add_yes_argument(parser)

    def run(self, **options: Any) -> dict[str, Any]:
        principal, now = Principal.for_command(), parse_now(options.get("now"))
        if not options["dry_run"]:
            due = keys_purge_deleted(principal=principal, now=now, dry_run=True)["keys"]
            if due:
                versions = sum(k["secret_versions"] for k in due)
                confirm(options, f"crypto-shred {len(due)} key(s) and {versions} secret version(s) under them")
        return keys_purge_deleted(principal=principal, now=now, dry_run=options["dry_run"])

    def render(self, result: dict[str, Any]) -> str:
        keys = result["keys"] if result.get("dry_run") else result["purged"]
        verb = "would purge" if result.get("dry_run") else "purged"
        lines = [f"{verb} {len(keys)} key(s)"]
        for k in keys:
            lines.append(
                f"  {k['key_id']} {k['key_name']}: {len(k['secrets'])} secret(s), "
                f"{k['secret_versions']} secret version(s) unrecoverable"
            )
        return "\n".join(lines)
