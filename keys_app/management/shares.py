"""Reading custodian shares and showing new ones, for the shamir commands.

Shares are read from the terminal without echo (``getpass``), or, when
standard input is not a terminal (automation, tests), one per line from it.
They are never taken from the command line (which ``ps`` and shell history
would keep) and never written to a file by HKMS.  New shares are written
once to standard output: as a block of text, or with ``--json`` as one JSON
line ``{"rek_version", "threshold", "total", "shares"}`` printed at once,
before anything is wrapped under the new key, so a crash later cannot lose them.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import CommandError


class ShareReader:
    """Shares from the terminal (no echo) or from a non-interactive stdin, one per line."""

    def __init__(self, stdin: IO[str] | None, stderr: Any) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stderr = stderr
        self.interactive = bool(getattr(self.stdin, "isatty", lambda: False)())
        self._lines: Iterator[str] | None = None

    def read_one(self, prompt: str) -> str | None:
        if self.interactive:
            try:
                share = getpass.getpass(f"{prompt}: ")
            except EOFError:
                return None
            return share.strip() or None
        if self._lines is None:
            self._lines = (line.strip() for line in self.stdin)
        for line in self._lines:
            if line:
                return line
        return None

    def read(self, count: int, what: str) -> list[str]:
        shares: list[str] = []
        for index in range(1, count + 1):
            share = self.read_one(f"{what}, share {index} of {count}")
            if share is None:
                raise CommandError(f"{count} shares are needed ({what}); only {len(shares)} were given")
            shares.append(share)
        return shares


def show_shares(stdout: Any, *, as_json: bool, version: int, shares: list[str], threshold: int, total: int) -> None:
    if as_json:
        stdout.write(json.dumps({"rek_version": version, "threshold": threshold, "total": total, "shares": shares}))
    else:
        lines = [
            f"Root key version {version}: {total} custodian shares, any {threshold} of which unseal it.",
            "They are shown now and never again. Give each custodian one share; none is stored by HKMS.",
        ]
        lines += [f"  share {index}: {share}" for index, share in enumerate(shares, 1)]
        stdout.write("\n".join(lines))
    stdout.flush()
