from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.management.commands._role_command import add_role_arguments, role_target
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant, user_by_name
from hkms_core.errors import ServiceError


class Command(BaseCommand):
    help = "Grant a role to a user on a project, a secret or a key."

    def add_arguments(self, parser: CommandParser) -> None:
        add_role_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_by_name(options["user"])
            target = role_target(options)
            role_grant(principal=Principal.for_command(), user=user, role=options["role"], obj=target)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"granted {options['role']} on {target._meta.model_name} {target.pk} to {user.get_username()}"
        )
