from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.management.shares import show_shares
from keys_app.providers import RootKeyUnavailable
from keys_app.services.audit_key import audit_key_ensure
from keys_app.services.root import hierarchy_init, hierarchy_is_initialised, rek_current
from keys_app.services.seal import shamir_provider


class Command(HierarchyCommand):
    help = (
        "Create the root key (REK version 1) in the configured provider; a no-op if it exists. "
        "With --provider shamir the REK is split into --shares custodian shares, any --threshold of "
        "which unseal it; they are printed once and stored nowhere."
    )

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", help="root key provider (default: HKMS_ROOT_KEY_PROVIDER)")
        parser.add_argument("--shares", type=int, help="shamir: number of custodian shares N (default 5)")
        parser.add_argument("--threshold", type=int, help="shamir: shares needed to unseal K (default 3)")

    def run(self, **options: Any) -> dict[str, Any]:
        result = self._init(**options)
        if not result.get("sealed"):
            audit_key_ensure()  # key the audit chain (idempotent; see keys_app.services.audit_key)
        return result

    def _init(self, **options: Any) -> dict[str, Any]:
        name = options.get("provider") or settings.HKMS_ROOT_KEY_PROVIDER
        if name != "shamir":
            if options.get("shares") or options.get("threshold"):
                raise CommandError("--shares and --threshold apply to the shamir provider only")
            row, created = hierarchy_init(name)
            if created and row.provider == "file" and not self.as_json:
                self.stderr.write("warning: the 'file' root key provider is for development only")
            return {"created": created, "rek_version": row.version, "provider": row.provider}
        provider = shamir_provider()
        if hierarchy_is_initialised():
            if provider.sealed:
                current = rek_current()
                return {"created": False, "rek_version": current.version, "provider": current.provider, "sealed": True}
            row, created = hierarchy_init(name)
            return {"created": created, "rek_version": row.version, "provider": row.provider}
        try:
            provider.configure_split(options.get("shares"), options.get("threshold"))
        except RootKeyUnavailable as exc:
            raise CommandError(str(exc)) from None

        def sink(version: int, shares: list[str], threshold: int, total: int) -> None:
            show_shares(
                self.stdout, as_json=self.as_json, version=version, shares=shares, threshold=threshold, total=total
            )

        provider.share_sink = sink
        try:
            row, created = hierarchy_init(name)
        finally:
            provider.share_sink = None
        return {"created": created, "rek_version": row.version, "provider": row.provider, "sealed": provider.sealed}

    def render(self, result: dict[str, Any]) -> str:
        verb = "initialised" if result["created"] else "already initialised"
        text = f"hierarchy {verb}: root key version {result['rek_version']} ({result['provider']} provider)"
        if result.get("sealed"):
            text += "; sealed: custodians must unseal it (manage.py unseal)"
        return text
