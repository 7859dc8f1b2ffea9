"""What every app's management commands share: the listing output (``--json``, one JSON array,
or aligned columns) and the ``--now`` option of the scheduled commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime


def parse_now(raw: str | None) -> datetime | None:
    """``--now`` as an ISO 8601 instant (UTC when it names no offset); a one-line error otherwise."""
    if raw is None:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise CommandError(f"--now {raw!r} is not an ISO 8601 date and time")
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def write_rows(out: Any, rows: list[dict[str, Any]], columns: list[str], *, as_json: bool, empty: str) -> None:
    if as_json:
        out.write(json.dumps(rows, sort_keys=True) + "\n")
        return
    if not rows:
        out.write(empty + "\n")
        return
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
