from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.management.shares import ShareReader, show_shares
from keys_app.services.seal import shamir_rekey, shamir_threshold


class Command(HierarchyCommand):
    help = (
        "Issue a new set of custodian shares for the same shamir root key, given K current shares; the old "
        "set stops unsealing. (If old shares may have leaked, rotate the root key instead.)"
    )
    stealth_options = ("stdin",)

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shares", type=int, required=True, help="number of shares in the new set (N)")
        parser.add_argument("--threshold", type=int, required=True, help="shares needed to unseal (K)")

    def run(self, **options: Any) -> dict[str, Any]:
        current = shamir_threshold()
        if current is None:
            raise CommandError("no active root key version is held by the shamir provider")
        reader = ShareReader(options.get("stdin"), self.stderr)
        shares = reader.read(current, "current share set")

        def show(version: int, new_shares: list[str]) -> None:
            show_shares(
                self.stdout,
                as_json=self.as_json,
                version=version,
                shares=new_shares,
                threshold=options["threshold"],
                total=options["shares"],
            )

        result = shamir_rekey(shares=shares, total=options["shares"], threshold=options["threshold"], show=show)
        return result

    def render(self, result: dict[str, Any]) -> str:
        return (
            f"rekeyed root key version {result['rek_version']}: the shares above ({result['threshold']} of "
            f"{result['shares']}) replace the previous set, which no longer unseals"
        )
