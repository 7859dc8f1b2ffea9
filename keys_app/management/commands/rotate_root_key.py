from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.management.shares import ShareReader, show_shares
from keys_app.models import RootKeyVersion
from keys_app.providers import RootKeyUnavailable
from keys_app.services.rotation.rek import rek_rotate
from keys_app.services.seal import shamir_authorize, shamir_provider, shamir_threshold


class Command(HierarchyCommand):
    help = (
        "Create a new REK version, re-wrap every KEK version under it and retire the old one (resumable). "
        "--to-provider moves the root key to another provider (file, shamir, pkcs11). While a shamir REK "
        "version is active, K of its custodians' shares are asked for (without echo) before anything changes."
    )
    batch_option = True
    dry_run_option = True
    stealth_options = ("stdin",)

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to-provider", help="create the new REK version in this provider")
        parser.add_argument("--shares", type=int, help="shamir target: number of custodian shares N")
        parser.add_argument("--threshold", type=int, help="shamir target: shares needed to unseal K")

    def run(self, **options: Any) -> dict[str, Any]:
        if options["dry_run"]:
            return rek_rotate(dry_run=True)
        target = options.get("to_provider") or settings.HKMS_ROOT_KEY_PROVIDER
        if target != "shamir" and (options.get("shares") or options.get("threshold")):
            raise CommandError("--shares and --threshold apply to a shamir target only")
        active_shamir = sorted(
            RootKeyVersion.objects.using("kek")
            .filter(provider="shamir", state=RootKeyVersion.State.ACTIVE)
            .values_list("version", flat=True)
        )
        provider = shamir_provider() if (active_shamir or target == "shamir") else None
        if provider is not None and active_shamir:
            self._collect_shares(provider, active_shamir, options)
        if provider is not None and target == "shamir":
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
            return rek_rotate(
                to_provider=options.get("to_provider"),
                batch_size=options["batch_size"],
                progress=self.progress(),
            )
        finally:
            if provider is not None:
                provider.share_sink = None

    def _collect_shares(self, provider: Any, active: list[int], options: dict[str, Any]) -> None:
        """K shares of the current shamir version (a quorum to rotate), and of any version not held."""
        reader = ShareReader(options.get("stdin"), self.stderr)
        presented = False
        for _ in range(len(active) + 1):
            missing = [v for v in active if not provider.has_version(v)]
            if presented and not missing:
                return
            version = missing[-1] if missing else active[-1]
            threshold = shamir_threshold(version)
            if threshold is None:
                raise CommandError(f"root key version {version} has no shamir check value")
            if not self.as_json:
                self.stderr.write(f"{threshold} custodian shares of root key version {version} are needed")
            shamir_authorize(reader.read(threshold, f"root key version {version}"))
            presented = True
        raise CommandError("the shares given do not unseal every active shamir root key version")
