"""Guarded destruction on the command line: a prompt on a terminal, ``--yes`` for scripts.

Every command that destroys key material or payloads (``revoke_key``,
``expire_secret_versions``, ``purge_deleted_keys``, ``forget_root_key_version``)
calls :func:`confirm` with a sentence naming what will be destroyed, after it
has computed that (a dry run) and before it changes anything:

- with ``--yes``: go on;
- on a terminal (standard input and error are ttys): print the sentence and ask;
  anything but ``yes``/``y`` aborts with exit status 1, nothing changed;
- otherwise (cron, a pipe, CI) without ``--yes``: refuse with one line, exit 1.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser


def add_yes_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--yes", "-y", action="store_true", help="do not ask for confirmation (scripts, cron): destroy at once"
    )


def confirm(options: dict[str, Any], what: str, *, stdin: Any = None, stderr: Any = None) -> None:
    """Return if the operator agrees to ``what``; raise ``CommandError`` (nothing changed) if not."""
    if options.get("yes"):
        return
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    if not (stdin.isatty() and stderr.isatty()):
        raise CommandError(f"refusing without confirmation: this would {what}; pass --yes to confirm non-interactively")
    stderr.write(f"This will {what}.\nType 'yes' to continue: ")
    stderr.flush()
    answer = stdin.readline().strip().lower()
    if answer not in {"yes", "y"}:
        raise CommandError("aborted: nothing was changed")
