from __future__ import annotations

from typing import Any

from keys_app.management.base import HierarchyCommand
from keys_app.services.audit_key import audit_key_rotate


class Command(HierarchyCommand):
    help = (
        "Create a new audit key version (random, wrapped by the current root key on the kek database) and "
        "key new audit events with it; older events keep verifying under their own version. On an "
        "installation whose chain has no audit key yet, this creates version 1. Needs the root key unsealed."
    )

    def run(self, **options: Any) -> dict[str, Any]:
        return {"audit_key_version": audit_key_rotate()}

    def render(self, result: dict[str, Any]) -> str:
        return f"audit events are now keyed with audit key version {result['audit_key_version']}"
