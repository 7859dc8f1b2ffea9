from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand, key_by_id
from keys_app.management.confirm import add_yes_argument, confirm
from keys_app.services.exposure import key_exposure_report
from secrets_app.services.revocation import key_revoke, revocation_summary, revocation_summary_text


class Command(HierarchyCommand):
    help = (
        "Revoke a compromised key: rotate it, re-encrypt everything under it, destroy the old "
        "material. Prints a summary (counts per project and secret type, what was re-encrypted and "
        "destroyed); --json prints the full exposure report, --report FILE writes it to a file. "
        "Asks for confirmation on a terminal; --yes for scripts."
    )
    batch_option = True
    dry_run_option = True

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")
        parser.add_argument("--reason", required=True, help="why the key is revoked (kept in the job record)")
        parser.add_argument("--report", metavar="FILE", help="write the full exposure report (JSON) to FILE (0600)")
        add_yes_argument(parser)

    def run(self, **options: Any) -> dict[str, Any]:
        key = key_by_id(options["key_id"])
        # Opened before anything changes: an unwritable path refuses the revocation, not its report.
        report_file = self._open_report(Path(options["report"])) if options.get("report") else None
        try:
            exposure = key_exposure_report(key)
            if options["dry_run"]:
                result = {"dry_run": True, "exposure": exposure, "summary": revocation_summary(report=exposure)}
            else:
                plan = revocation_summary(report=exposure)
                confirm(
                    options,
                    f"revoke key {key.name} ({key.id}): re-encrypt {plan['secret_versions_reencrypted']} secret "
                    f"version(s) of {plan['secrets']} secret(s) under fresh DEKs, then destroy KEK version(s) "
                    f"{', '.join(str(v) for v in exposure['kek_versions']) or 'none'} for good",
                )
                report = key_revoke(
                    key=key, reason=options["reason"], batch_size=options["batch_size"], progress=self.progress()
                )
                result = {**report, "summary": revocation_summary(report=report)}
        except BaseException:
            if report_file is not None:
                report_file.close()
            raise
        if report_file is not None:
            with report_file:
                json.dump(result, report_file, indent=2, default=str, sort_keys=True)
                report_file.write("\n")
        return result

    @staticmethod
    def _open_report(path: Path) -> TextIO:
        try:
            return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
        except OSError as exc:
            raise CommandError(f"cannot write the report to {path}: {exc.strerror}") from None

    def render(self, result: dict[str, Any]) -> str:
        return revocation_summary_text(result["summary"], dry_run=bool(result.get("dry_run")))
