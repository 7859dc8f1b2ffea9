from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.management.shares import ShareReader
from keys_app.services.seal import seal_status, unseal_reset, unseal_submit


class Command(HierarchyCommand):
    help = (
        "Submit a custodian share to unseal the shamir root key. The share is read from the terminal "
        "without echo (or one per line from standard input when it is not a terminal); progress is shared "
        "by every submitter, and the K-th share unseals every server worker."
    )
    stealth_options = ("stdin",)

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--status", action="store_true", help="only show the seal state and progress")
        parser.add_argument("--reset", action="store_true", help="discard the shares submitted so far")

    def run(self, **options: Any) -> dict[str, Any]:
        if options["status"]:
            return seal_status()
        if options["reset"]:
            return unseal_reset()
        reader = ShareReader(options.get("stdin"), self.stderr)
        result: dict[str, Any] | None = None
        while True:
            status = result or seal_status()
            if not status["sealed"]:
                break
            if result is not None and reader.interactive:
                break  # one share per custodian at the terminal
            threshold = status.get("threshold") or "?"
            share = reader.read_one(f"share ({status.get('progress', 0)} of {threshold} submitted so far)")
            if share is None:
                break
            result = unseal_submit(share)
            if not self.as_json and not reader.interactive and result["sealed"]:
                self.stderr.write(self.render(result))
        if result is None:
            if not status["sealed"]:
                return {**status, "message": "already unsealed"}
            raise CommandError("no share was given")
        return result

    def render(self, result: dict[str, Any]) -> str:
        if not result["sealed"]:
            return f"unsealed ({result.get('message', '')})".replace(" ()", "")
        return f"sealed: unseal progress {result.get('progress', 0)} of {result.get('threshold') or '?'}"
