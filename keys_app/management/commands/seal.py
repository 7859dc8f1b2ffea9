from __future__ import annotations

from typing import Any

from keys_app.management.base import HierarchyCommand
from keys_app.services.seal import seal


class Command(HierarchyCommand):
    help = (
        "Seal the shamir root key: the seal keeper forgets it and every server worker drops its cached "
        "keys; nothing that needs a key is served until custodians unseal again."
    )

    def run(self, **options: Any) -> dict[str, Any]:
        return seal()

    def render(self, result: dict[str, Any]) -> str:
        return "sealed: the root key is forgotten; custodians must unseal (manage.py unseal)"
