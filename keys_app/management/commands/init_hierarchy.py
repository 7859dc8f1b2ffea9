from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.services.root import hierarchy_init


class Command(HierarchyCommand):
    help = "Create the root key (REK version 1) in the configured provider; a no-op if it exists."

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", help="root key provider (default: HKMS_ROOT_KEY_PROVIDER)")

    def run(self, **options: Any) -> dict[str, Any]:
        row, created = hierarchy_init(options.get("provider"))
        if created and row.provider == "file" and not self.as_json:
            self.stderr.write("warning: the 'file' root key provider is for development only")
        return {"created": created, "rek_version": row.version, "provider": row.provider}

    def render(self, result: dict[str, Any]) -> str:
        verb = "initialised" if result["created"] else "already initialised"
        return f"hierarchy {verb}: root key version {result['rek_version']} ({result['provider']} provider)"
