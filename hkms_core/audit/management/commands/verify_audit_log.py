from __future__ import annotations

import json
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.audit.services import audit_verify

_ANCHOR = re.compile(r"([0-9]{1,19}):([0-9a-f]{64})")


def _anchor(raw: str) -> tuple[int, str]:
    match = _ANCHOR.fullmatch(raw.strip())
    if match is None:
        raise CommandError(
            f"--expect-head takes SEQ:HASH (64 hex digits), as printed by this command; got {raw[:80]!r}"
        )
    return int(match.group(1)), match.group(2)


class Command(BaseCommand):
    help = (
        "Verify the audit log's keyed hash chain. Exit 0: intact (the head printed is the anchor to keep "
        "outside the databases); 1: edited, deleted, reordered or truncated (names the first broken event); "
        "2: refused (the audit key cannot be unwrapped or is not the one the chain was written with); "
        "3: events written without the audit key after the chain was keyed (sealed periods, or a rewrite)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--expect-head",
            action="append",
            default=[],
            metavar="SEQ:HASH",
            help="an anchor exported earlier (repeatable): event SEQ must exist with this hash",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        anchors = [_anchor(raw) for raw in options["expect_head"]]
        result = audit_verify(expect_heads=anchors)
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif result["ok"]:
            head = result["head"]
            self.stdout.write(
                f"audit log OK: {result['checked']} events ({result['keyed']} keyed), chain intact; "
                f"head {head['seq']}:{head['hash']}"
            )
            for first, last in result["unkeyed_after_keyed"]:
                covered = (
                    "NOT authenticated (end of the log)" if last == head["seq"] else "covered by the next keyed event"
                )
                self.stdout.write(
                    f"warning: events #{first}-#{last} were written unkeyed (root key sealed?): {covered}"
                )
        else:
            broken = result["first_broken"]
            word = {"refused": "REFUSED", "unauthenticated": "UNAUTHENTICATED"}.get(result["status"], "BROKEN")
            self.stdout.write(
                f"audit log {word} at event #{broken['seq']}: {broken['reason']} "
                f"({result['checked']} events verified before it)"
            )
        if not result["ok"]:
            raise SystemExit({"refused": 2, "unauthenticated": 3}.get(result["status"], 1))
