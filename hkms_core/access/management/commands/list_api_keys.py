from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hkms_core.access.apikeys import api_keys_visible
from hkms_core.access.principal import Principal


class Command(BaseCommand):
    help = "List API keys (access keys only; secret keys are never stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="only this user's keys")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        keys = api_keys_visible(Principal.for_command())
        if options.get("user"):
            keys = keys.filter(user__username=options["user"])
        rows = [
            {
                "access_key": k.access_key,
                "user": k.user.get_username(),
                "project_id": str(k.default_project_id) if k.default_project_id else None,
                "created_at": k.created_at.isoformat(),
                "expires_at": k.expires_at.isoformat() if k.expires_at else None,
                "revoked": k.revoked_at is not None,
                "active": k.is_active,
            }
            for k in keys
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            state = "revoked" if row["revoked"] else ("active" if row["active"] else "expired")
            self.stdout.write(
                f"{row['access_key']}  {row['user']:<20} {state:<8} project={row['project_id']} "
                f"expires={row['expires_at'] or 'never'}"
            )
