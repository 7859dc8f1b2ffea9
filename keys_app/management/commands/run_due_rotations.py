from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_core.cli import parse_now
from keys_app.management.base import HierarchyCommand
from keys_app.services.jobs import EXIT_BUSY
from keys_app.services.keys.scheduling import keys_rotate_due


class Command(HierarchyCommand):
    help = (
        "Rotate every key whose rotation policy says it is due (each exactly once, even when several "
        "machines run this at the same time); with --rewrap, re-wrap their DEKs too. Safe from cron every minute."
    )
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rewrap", action="store_true", help="re-wrap the DEKs of each rotated key")
        parser.add_argument("--now", help="pretend the time is this ISO 8601 instant (tests, catch-up runs)")
        parser.add_argument("--batch-size", type=int, default=1000, help="DEKs per committed re-wrap batch")

    def run(self, **options: Any) -> dict[str, Any]:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        result = keys_rotate_due(
            principal=Principal.for_command(),
            now=parse_now(options.get("now")),
            rewrap=options["rewrap"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
        )
        errors = result.get("errors") or []
        self.failed = bool(errors)
        self.only_busy = bool(errors) and all(e.get("busy") for e in errors)
        return result

    def handle(self, *args: Any, **options: Any) -> None:
        """Exit 0 when everything due was done; 75 (EX_TEMPFAIL, like every command whose job is
        busy) when the only failures are re-wraps another process is running — the keys were
        rotated and the next run re-wraps them; 1 on any other failure."""
        self.failed = self.only_busy = False
        super().handle(*args, **options)
        if self.only_busy:
            raise CommandError("some re-wraps are running in another process: try again later", returncode=EXIT_BUSY)
        if self.failed:
            raise CommandError("some keys could not be rotated or re-wrapped (see errors above)")

    def render(self, result: dict[str, Any]) -> str:
        if result.get("dry_run"):
            lines = [f"{len(result['due'])} key(s) due at {result['now']}"]
            lines += [f"  {k['key_id']} {k['name']} (due {k['next_rotation_at']})" for k in result["due"]]
            return "\n".join(lines)
        lines = [f"rotated {len(result['rotated'])} key(s) at {result['now']}"]
        for k in result["rotated"]:
            rewrapped = f", {k['deks_rewrapped']} DEK(s) re-wrapped" if "deks_rewrapped" in k else ""
            lines.append(f"  {k['key_id']} {k['name']} -> version {k['primary_version']}{rewrapped}")
        if result["skipped_rotated_elsewhere"]:
            lines.append(f"{len(result['skipped_rotated_elsewhere'])} key(s) rotated by a concurrent run")
        lines += [f"error: {e['key_id']}: {e['error']}" for e in result["errors"]]
        return "\n".join(lines)
