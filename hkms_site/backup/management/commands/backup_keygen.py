from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_site.backup.envelope import generate_keypair


class Command(BaseCommand):
    help = (
        "Make an X25519 key pair for encrypted backups: the private key goes to PRIVATE_FILE (0600; keep it "
        "offline, apart from the backups), the public key to PRIVATE_FILE.pub and stdout (backup --encrypt-to)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("private_file")

    def handle(self, *args: Any, **options: Any) -> None:
        private_path = Path(options["private_file"])
        public_path = private_path.with_name(private_path.name + ".pub")
        private_pem, public_pem = generate_keypair()
        try:
            fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise CommandError(f"cannot create {private_path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public_path.write_bytes(public_pem)
        self.stdout.write(public_pem.decode().rstrip())
        self.stderr.write(f"private key: {private_path} (0600); public key: {public_path}")
