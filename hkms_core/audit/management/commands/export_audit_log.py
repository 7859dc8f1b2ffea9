from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from hkms_core.audit.services import audit_export


def parse_instant(option: str, raw: str) -> datetime:
    """An ISO 8601 date or time; UTC when it carries no offset."""
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"{option} {raw!r} is not an ISO 8601 date or time") from None
    return timezone.make_aware(instant, UTC) if timezone.is_naive(instant) else instant


class Command(BaseCommand):
    help = (
        "Write audit events as JSON lines (one event per line, chain order) for an external log store, "
        "optionally only those between --since (inclusive) and --until (exclusive) that match filters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO 8601 date or time, inclusive (UTC when no offset is given)")
        parser.add_argument("--until", help="ISO 8601 date or time, exclusive (UTC when no offset is given)")
        parser.add_argument("--actor", help="only events of this actor (e.g. alice, or ops@host for a command)")
        parser.add_argument("--action", help="only this action; a trailing * matches a prefix (command.*)")
        parser.add_argument("--object", help="only events about this object: ID, or TYPE:ID (secret:…)")
        parser.add_argument("--project", help="only events in this project id")
        parser.add_argument("--format", choices=["jsonl"], default="jsonl")

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_instant("--since", options["since"]) if options.get("since") else None
        until = parse_instant("--until", options["until"]) if options.get("until") else None
        if since is not None and until is not None and until <= since:
            raise CommandError("--until must be later than --since")
        filters = {name: options[name] for name in ("actor", "action") if options.get(name)}
        if options.get("project"):
            filters["project_id"] = options["project"]
        if options.get("object"):
            kind, _, object_id = options["object"].rpartition(":")
            filters["object_id"] = object_id
            if kind:
                filters["object_type"] = kind
        for event in audit_export(since=since, until=until, filters=filters):
            self.stdout.write(json.dumps(event, sort_keys=True))
