"""Shared plumbing for the hierarchy commands: errors, --json, progress bars.

Commands stay thin: parse arguments, call one service, print the result.  Any
``HierarchyError`` becomes a one-line ``CommandError``: exit status 1, or 75
(``EX_TEMPFAIL``) when a rotation job is busy (``services.jobs.JobBusy``: a live
process holds it, a conflicting job runs, or another node won the claim race).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_record
from keys_app.errors import HierarchyError
from keys_app.models import Key


class HierarchyCommand(BaseCommand):
    json_option = True
    #: State-changing commands append an audit event (allowed or failed) when they finish.
    audited = True
    batch_option = False
    dry_run_option = False
    default_batch_size = 500

    def add_arguments(self, parser: CommandParser) -> None:
        if self.json_option:
            parser.add_argument("--json", action="store_true", help="print one JSON object")
        if self.batch_option:
            parser.add_argument(
                "--batch-size",
                type=int,
                default=self.default_batch_size,
                help=f"rows per committed batch (default {self.default_batch_size})",
            )
        if self.dry_run_option:
            parser.add_argument("--dry-run", action="store_true", help="report what would be done, change nothing")
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser: CommandParser) -> None:
        """Subclasses add their own arguments here."""

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = bool(options.get("json"))
        if self.batch_option and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            result = self.run(**options)
        except HierarchyError as exc:
            self.audit("failed", error=type(exc).__name__)
            # A lost job claim (JobBusy) exits 75, EX_TEMPFAIL: cron and schedulers retry later.
            raise CommandError(str(exc), returncode=getattr(exc, "exit_code", 1)) from None
        self.audit("allowed", **{k: v for k, v in (result or {}).items() if isinstance(v, bool | int | str)})
        if result is not None:
            self.emit(result)

    def audit(self, outcome: str, **detail: Any) -> None:
        """Record the operator's command in the audit log (read-only commands are not recorded)."""
        if not self.audited:
            return
        audit_record(Principal.for_command(), f"command.{self.command_name()}", None, outcome=outcome, **detail)

    def command_name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def run(self, **options: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def emit(self, result: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(result, default=str, sort_keys=True))
        else:
            self.stdout.write(self.render(result))

    def render(self, result: dict[str, Any]) -> str:
        """Human-readable output; defaults to ``key: value`` lines."""
        return "\n".join(f"{k}: {v}" for k, v in result.items())

    def progress(self) -> Callable[[int, int], None] | None:
        """A progress bar on stderr (none with --json or when stderr is not a terminal)."""
        if self.as_json or not sys.stderr.isatty():
            return None
        last = [0.0]

        def show(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < 0.2 and done < total:
                return
            last[0] = now
            width = 30
            filled = int(width * done / total) if total else width
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

        return show


def key_by_id(raw: str) -> Key:
    try:
        key_id = uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"{raw!r} is not a key id (a UUID)") from None
    key = Key.objects.filter(id=key_id).first()
    if key is None:
        raise CommandError(f"key {key_id} does not exist")
    return key
