from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from hkms_site.audit.services import audit_export


class Command(BaseCommand):
    help = "Write audit events as JSON lines (one event per line) for an external log store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO 8601 date or time (UTC when no offset is given)")
        parser.add_argument("--format", choices=["jsonl"], default="jsonl")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options.get("since"):
            try:
                since = datetime.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not an ISO 8601 date or time") from None
            if timezone.is_naive(since):
                since = timezone.make_aware(since, UTC)
        for event in audit_export(since=since):
            self.stdout.write(json.dumps(event, sort_keys=True))
