from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.apikeys import api_key_revoke
from hkms_core.access.principal import Principal
from hkms_core.errors import ServiceError


class Command(BaseCommand):
    help = "Revoke an API key by its access key; it stops working at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("access_key")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            api_key = api_key_revoke(principal=Principal.for_command(), access_key=options["access_key"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"revoked {api_key.access_key} (user {api_key.user.get_username()})")
