"""Argument helpers shared by the access commands."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import CommandError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(raw: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``2w``."""
    match = _DURATION.match(raw.strip())
    if match is None or int(match.group(1)) == 0:
        raise CommandError(f"--expires-in {raw!r} is not a duration such as 30d, 12h or 90m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
