"""Create the first console account: ``admin``, a superuser with a random password.

Idempotent: the first run creates the user, writes the password once to
``$HKMS_DATA_DIR/admin_password`` (mode 0600) and prints it; later runs only
say where it is (or that it was removed, after the operator changed it).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_record


class Command(BaseCommand):
    help = "Create the 'admin' superuser with a random password (printed once, kept in the data dir)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        path = settings.HKMS_DATA_DIR / "admin_password"
        users = get_user_model().objects
        if users.filter(username=username).exists():
            if path.exists():
                self.stdout.write(f"Console user '{username}' exists; its first password is in {path}")
            else:
                self.stdout.write(f"Console user '{username}' exists.")
            return
        password = secrets.token_urlsafe(18)
        settings.HKMS_DATA_DIR.mkdir(parents=True, exist_ok=True)
        with transaction.atomic():
            user = users.create_superuser(username=username, email="", password=password)
            audit_record(Principal.for_command(), "user.create", None, username=username, superuser=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        os.chmod(path, 0o600)
        self.stdout.write(f"Console user '{user.get_username()}' created with password: {password}")
        self.stdout.write(f"(also written to {path}; change it after the first login)")
